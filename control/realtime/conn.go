package realtime

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// conn is one client. The reader goroutine owns the socket's read side;
// writes happen in a writer goroutine that runs only while messages are
// queued, so an idle connection costs one goroutine.
type conn struct {
	hub *Hub
	ws  *websocket.Conn
	id  Identity

	mu      sync.Mutex
	queue   []*websocket.PreparedMessage // nil entry = ping
	writing bool
	closed  bool
	// released is set once the handler is about to return: fasthttp then
	// recycles the hijacked connection, so nobody may touch c.ws after it.
	// serve sets it only after the writer goroutine has stopped.
	released bool
	idle     *sync.Cond // signalled when writing turns false
	topics   []string   // joined topics, a handful at most
}

// clientMessage is every client → server message.
type clientMessage struct {
	Type  string `json:"type"`
	Ref   string `json:"ref,omitempty"`
	Room  string `json:"room,omitempty"`
	Body  string `json:"body,omitempty"`
	Emoji string `json:"emoji,omitempty"`
	Token string `json:"token,omitempty"`
}

// Client error codes.
const (
	codeBadMessage   = "bad_message"
	codeUnauthorized = "unauthorized"
	codeTooManyRooms = "too_many_rooms"
	codeNotJoined    = "not_subscribed"
)

func (c *conn) serve() {
	c.mu.Lock()
	if c.idle == nil {
		c.idle = sync.NewCond(&c.mu)
	}
	c.mu.Unlock()
	defer c.release()
	defer c.hub.unregister(c)
	defer c.close()
	h := c.hub
	wait := 3 * h.conf.PingInterval
	c.ws.SetReadLimit(h.conf.MaxMessageBytes)
	_ = c.extendRead(wait)
	c.ws.SetPongHandler(func(string) error { return c.extendRead(wait) })
	if c.id.UserID != "" {
		if err := h.join(c, UserTopic(c.id.UserID)); err != nil {
			return
		}
		c.remember(UserTopic(c.id.UserID))
	}
	c.reply(Envelope{Type: "welcome", Data: map[string]string{"user_id": c.id.UserID, "username": c.id.Username}})
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if c.extendRead(wait) != nil {
			return
		}
		var m clientMessage
		if err := json.Unmarshal(data, &m); err != nil {
			c.fail("", codeBadMessage, "message is not valid JSON: "+err.Error())
			continue
		}
		c.handle(m)
	}
}

func (c *conn) handle(m clientMessage) {
	h := c.hub
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	switch m.Type {
	case "ping":
		c.reply(Envelope{Type: "pong", Ref: m.Ref})
	case "auth":
		var id Identity
		err := shallow(func() (err error) { id, err = h.backend.Authenticate(m.Token); return err })
		if err != nil {
			c.fail(m.Ref, errCode(err, codeUnauthorized), err.Error())
			return
		}
		if c.id.UserID != "" && c.id.UserID != id.UserID {
			c.fail(m.Ref, codeBadMessage, "connection already authenticated as another user")
			return
		}
		if c.id.UserID == "" {
			if err := h.join(c, UserTopic(id.UserID)); err != nil {
				c.fail(m.Ref, "internal", err.Error())
				return
			}
			c.remember(UserTopic(id.UserID))
		}
		c.mu.Lock()
		c.id = id
		c.mu.Unlock()
		c.reply(Envelope{Type: "ack", Ref: m.Ref, Data: map[string]string{"user_id": id.UserID}})
	case "subscribe":
		if m.Room == "" {
			c.fail(m.Ref, codeBadMessage, "subscribe needs a room (stream id)")
			return
		}
		t := RoomTopic(m.Room)
		if c.has(t) {
			c.reply(Envelope{Type: "ack", Ref: m.Ref, Room: m.Room})
			return
		}
		if c.roomCount() >= h.conf.MaxRooms {
			c.fail(m.Ref, codeTooManyRooms, "too many rooms on one connection")
			return
		}
		if err := shallow(func() error { return h.backend.Join(ctx, c.identity(), m.Room) }); err != nil {
			c.fail(m.Ref, errCode(err, "forbidden"), err.Error())
			return
		}
		if err := h.join(c, t); err != nil {
			c.fail(m.Ref, "internal", err.Error())
			return
		}
		c.remember(t)
		c.reply(Envelope{Type: "ack", Ref: m.Ref, Room: m.Room})
	case "unsubscribe":
		h.leave(c, RoomTopic(m.Room))
		c.reply(Envelope{Type: "ack", Ref: m.Ref, Room: m.Room})
	case "comment", "reaction":
		id := c.identity()
		if id.UserID == "" {
			c.fail(m.Ref, codeUnauthorized, "sign in to "+m.Type)
			return
		}
		if !c.has(RoomTopic(m.Room)) {
			c.fail(m.Ref, codeNotJoined, "subscribe to the room first")
			return
		}
		var err error
		err = shallow(func() error {
			if m.Type == "comment" {
				return h.backend.Comment(ctx, id, m.Room, m.Body)
			}
			return h.backend.React(ctx, id, m.Room, m.Emoji)
		})
		if err != nil {
			c.fail(m.Ref, errCode(err, "internal"), err.Error())
			return
		}
		c.reply(Envelope{Type: "ack", Ref: m.Ref, Room: m.Room})
	default:
		c.fail(m.Ref, codeBadMessage, "unknown message type "+quote(m.Type))
	}
}

// shallow runs fn on a short-lived goroutine. Backend calls go deep (SQL
// drivers); run on the connection's own goroutine they would grow its stack
// for the connection's whole life, and idle connections are the ones that
// must stay small.
func shallow(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return <-done
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (c *conn) reply(env Envelope) {
	b, err := json.Marshal(env)
	if err != nil {
		return
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		return
	}
	c.send(pm)
}

func (c *conn) fail(ref, code, msg string) {
	c.reply(Envelope{Type: "error", Ref: ref, Error: &EnvelopeError{Code: code, Message: msg}})
}

// send queues a message (nil = ping). A client whose queue is full is
// disconnected rather than allowed to hold memory or slow others.
func (c *conn) send(pm *websocket.PreparedMessage) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.hub.conf.SendQueue {
		remote := ""
		if !c.released {
			remote = c.ws.RemoteAddr().String()
		}
		c.mu.Unlock()
		c.hub.dropped.Add(1)
		c.hub.log.Info("disconnecting slow websocket client", "remote", remote, "user", c.identity().UserID, "queued", c.hub.conf.SendQueue)
		c.close()
		return
	}
	c.queue = append(c.queue, pm)
	if !c.writing {
		c.writing = true
		c.hub.wg.Add(1)
		go c.flush()
	}
	c.mu.Unlock()
}

func (c *conn) flush() {
	defer c.hub.wg.Done()
	for {
		c.mu.Lock()
		if c.closed || len(c.queue) == 0 {
			c.writing = false
			c.queue = nil // give the backing array back while idle
			if c.idle != nil {
				c.idle.Broadcast()
			}
			c.mu.Unlock()
			return
		}
		pm := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		var err error
		if pm == nil {
			err = c.ws.WriteControl(websocket.PingMessage, nil, deadline)
		} else {
			_ = c.ws.SetWriteDeadline(deadline)
			err = c.ws.WritePreparedMessage(pm)
		}
		if err != nil {
			c.close()
			// Drain so close() state and writing flag stay consistent.
			continue
		}
	}
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.queue = nil
	// Ending the reader unregisters the conn and returns from the handler,
	// after which fasthttp closes the hijacked TCP connection (Close on a
	// hijacked conn is a no-op, and reaching under it races with fasthttp's
	// release). An expired read deadline wakes the reader; extendRead never
	// pushes it out again once closed is set.
	if !c.released {
		_ = c.ws.NetConn().SetReadDeadline(time.Now())
	}
}

// goingAway tells the client the server is shutting down, then closes.
func (c *conn) goingAway() {
	c.mu.Lock()
	if !c.closed && !c.released {
		// WriteControl may run concurrently with the writer goroutine.
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
	}
	c.mu.Unlock()
	c.close()
}

// release waits for the writer goroutine to stop and marks the conn as
// released: after the handler returns, c.ws belongs to fasthttp again.
func (c *conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.writing {
		c.idle.Wait()
	}
	c.released = true
}

// extendRead pushes the read deadline out unless the conn is closing.
func (c *conn) extendRead(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.ws.SetReadDeadline(time.Now().Add(d))
}

func (c *conn) identity() Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

func (c *conn) remember(t string) {
	c.mu.Lock()
	c.topics = append(c.topics, t)
	c.mu.Unlock()
}

func (c *conn) forget(t string) {
	c.mu.Lock()
	for i, x := range c.topics {
		if x == t {
			c.topics = append(c.topics[:i], c.topics[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
}

func (c *conn) has(t string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.topics {
		if x == t {
			return true
		}
	}
	return false
}

func (c *conn) roomCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.topics {
		if len(x) > 5 && x[:5] == "room." {
			n++
		}
	}
	return n
}

func (c *conn) topicList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.topics...)
}
