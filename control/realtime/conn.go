package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// conn is one client. The reader goroutine owns the socket's read side
// (gorilla parses client frames). Writes bypass gorilla: frames are written
// to the socket without blocking by whoever produces them (a shard writer
// for room messages, the reader for replies, the pinger), see writer.go; a
// goroutine exists only while a slow client has a backlog. An idle
// connection costs one parked goroutine and a few hundred bytes.
type conn struct {
	hub *Hub
	ws  *websocket.Conn // read side only
	// sock is the accepted connection itself (not fasthttp's hijack
	// wrapper); the connection's goroutine closes it when serve returns.
	// Writing or setting deadlines on it stays safe after it is closed.
	sock  net.Conn
	fd    int // the socket's descriptor for non-blocking writes; -1 without one (TLS)
	shard int
	ip    string

	mu       sync.Mutex
	id       Identity
	closed   bool
	pending  [][]byte // frames the drainer still has to write, oldest first
	draining bool     // a drainer goroutine owns the write side
	topics   []string // joined topics, a handful at most
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
	defer c.hub.unregister(c)
	defer c.close()
	h := c.hub
	wait := 3 * h.conf.PingInterval
	c.ws.SetReadLimit(h.conf.MaxMessageBytes)
	_ = c.extendRead(wait)
	c.ws.SetPongHandler(func(string) error { return c.extendRead(wait) })
	// gorilla would answer pings and close frames by writing on its own;
	// every write goes through send so frames never interleave.
	c.ws.SetPingHandler(func(data string) error {
		c.send(frame(opPong, []byte(data)))
		return c.extendRead(wait)
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		c.send(closeFrame(uint16(code), ""))
		return nil
	})
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
			c.failErr(m.Ref, codeUnauthorized, err)
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
			c.failErr(m.Ref, "forbidden", err)
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
			c.failErr(m.Ref, "internal", err)
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
	c.send(frame(opText, b))
}

func (c *conn) fail(ref, code, msg string) {
	c.reply(Envelope{Type: "error", Ref: ref, Error: &EnvelopeError{Code: code, Message: msg}})
}

// failErr answers a backend error. A CodedError is meant for the client; any
// other error is a failure inside the server (SQL, bus) whose text must not
// reach clients, as the HTTP API keeps it in the log too.
func (c *conn) failErr(ref, fallback string, err error) {
	var ce CodedError
	if errors.As(err, &ce) {
		c.fail(ref, ce.Code(), err.Error())
		return
	}
	c.hub.log.Error("websocket request failed", "err", err)
	c.fail(ref, fallback, "internal error; it was logged")
}

// extendRead pushes the read deadline out unless the conn is closing.
func (c *conn) extendRead(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.sock.SetReadDeadline(time.Now().Add(d))
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
