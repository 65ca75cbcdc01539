package realtime

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/engine"
	"github.com/valyala/fasthttp"
)

// rules is a small in-memory Backend: tokens are "user:NAME", the room
// "closed" refuses everyone. It stands in for the control server's rules,
// which the control package tests end to end; here the hub is under test.
type rules struct{ hub *Hub }

func (r *rules) Authenticate(token string) (Identity, error) {
	name, ok := strings.CutPrefix(token, "user:")
	if !ok {
		return Identity{}, errors.New("bad token")
	}
	return Identity{UserID: name, Username: name, Role: "viewer"}, nil
}

func (r *rules) Join(_ context.Context, _ Identity, room string) error {
	if room == "closed" {
		return errors.New("room closed")
	}
	return nil
}

func (r *rules) Comment(ctx context.Context, id Identity, room, body string) error {
	return r.hub.Publish(ctx, RoomTopic(room), Envelope{Type: "comment", Room: room, Data: map[string]string{"user_id": id.UserID, "body": body}})
}

func (r *rules) React(ctx context.Context, id Identity, room, emoji string) error {
	return r.hub.Publish(ctx, RoomTopic(room), Envelope{Type: "reaction", Room: room, Data: map[string]string{"emoji": emoji}})
}

func startHub(t *testing.T, bus engine.Bus) (*Hub, string) {
	t.Helper()
	return startHubConf(t, DefaultConfig(), bus)
}

func startHubConf(t *testing.T, conf Config, bus engine.Bus) (*Hub, string) {
	t.Helper()
	r := &rules{}
	h, err := New(conf, bus, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.hub = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h.Handle, KeepHijackedConns: true}
	go srv.Serve(ln)
	t.Cleanup(func() { h.Close(); srv.Shutdown(); ln.Close() })
	return h, "ws://" + ln.Addr().String() + "/"
}

type peer struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, url string) *peer {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, c: c}
}

func (p *peer) send(v map[string]string) {
	if err := p.c.WriteJSON(v); err != nil {
		p.t.Fatal(err)
	}
}

// next reads until a message of typ arrives.
func (p *peer) next(typ string) map[string]any {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var m map[string]any
		if err := p.c.ReadJSON(&m); err != nil {
			p.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

func TestHubsShareRoomsThroughBus(t *testing.T) {
	bus := engine.NewLocalBus()
	t.Cleanup(func() { bus.Close() })
	h1, url1 := startHub(t, bus)
	h2, url2 := startHub(t, bus)

	bob := dial(t, url2+"?access_token=user:bob")
	bob.next("welcome")
	bob.send(map[string]string{"type": "subscribe", "room": "r1", "ref": "1"})
	bob.next("ack")
	alice := dial(t, url1)
	alice.next("welcome")
	alice.send(map[string]string{"type": "auth", "token": "user:alice", "ref": "a"})
	alice.next("ack")
	alice.send(map[string]string{"type": "subscribe", "room": "r1", "ref": "2"})
	alice.next("ack")
	alice.send(map[string]string{"type": "comment", "room": "r1", "body": "hi bob"})
	m := bob.next("comment")
	if d, _ := json.Marshal(m["data"]); !strings.Contains(string(d), "hi bob") {
		t.Fatalf("comment %v", m)
	}
	// Personal channel: a message to bob's topic from the other hub.
	if err := h1.Publish(context.Background(), UserTopic("bob"), Envelope{Type: "followed"}); err != nil {
		t.Fatal(err)
	}
	bob.next("followed")
	// Refused room.
	alice.send(map[string]string{"type": "subscribe", "room": "closed", "ref": "3"})
	if e := alice.next("error"); e["ref"] != "3" {
		t.Fatalf("error %v", e)
	}
	// A ban published on the room expels bob's connection from it.
	if err := h1.Publish(context.Background(), RoomTopic("r1"), Envelope{Type: "banned", Room: "r1", Data: map[string]string{"user_id": "bob"}}); err != nil {
		t.Fatal(err)
	}
	bob.next("banned")
	deadline := time.Now().Add(30 * time.Second)
	for {
		h2.mu.Lock()
		_, inRoom := h2.topics[RoomTopic("r1")]
		h2.mu.Unlock()
		if !inRoom {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("banned user still in the room")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h1.Connections() != 1 || h2.Connections() != 1 {
		t.Fatalf("connections %d %d", h1.Connections(), h2.Connections())
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.SendQueue = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "control.ws.send_queue") {
		t.Fatalf("want a named key, got %v", err)
	}
	// The read deadline is 3 × ping_interval: an interval near the
	// Duration limit overflowed to a deadline in the past, and every
	// connection dropped at once.
	c = DefaultConfig()
	c.PingInterval = 100 * 365 * 24 * time.Hour
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "control.ws.ping_interval") {
		t.Fatalf("a ping interval of 100 years: want a named error, got %v", err)
	}
}

func TestConnectionsPerIPCapped(t *testing.T) {
	bus := engine.NewLocalBus()
	t.Cleanup(func() { bus.Close() })
	conf := DefaultConfig()
	conf.MaxConnsPerIP = 2
	h, url := startHubConf(t, conf, bus)
	a := dial(t, url)
	a.next("welcome")
	b := dial(t, url)
	b.next("welcome")
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: want 429, got %v %v", resp, err)
	}
	var body struct {
		Error EnvelopeError `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Code != "too_many_connections" ||
		!strings.Contains(body.Error.Message, "max_conns_per_ip") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("refusal: %+v %v, Retry-After %q", body, err, resp.Header.Get("Retry-After"))
	}
	// A closed connection frees its slot.
	a.c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for h.Connections() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("closed connection still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, url)
	c.next("welcome")
	// A handshake that fails (no Upgrade header) does not leak a slot.
	for i := 0; i < 3; i++ {
		r, err := http.Get(strings.Replace(url, "ws://", "http://", 1))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest && r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("plain GET: %d", r.StatusCode)
		}
	}
	c.c.Close()
	d := dialEventually(t, url)
	d.next("welcome")
}

// dialEventually dials until the hub has released a closed client's slot.
func dialEventually(t *testing.T, url string) *peer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return &peer{t: t, c: c}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFrameEncoding(t *testing.T) {
	for _, tc := range []struct{ n, header int }{{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {70000, 10}} {
		p := []byte(strings.Repeat("a", tc.n))
		f := frame(opText, p)
		if f[0] != 0x81 || f[1]&0x80 != 0 || len(f) != tc.header+tc.n || string(f[tc.header:]) != string(p) {
			t.Fatalf("len %d: header % x, frame %d bytes", tc.n, f[:tc.header], len(f))
		}
		var n uint64
		switch f[1] {
		case 126:
			n = uint64(binary.BigEndian.Uint16(f[2:]))
		case 127:
			n = binary.BigEndian.Uint64(f[2:])
		default:
			n = uint64(f[1])
		}
		if n != uint64(tc.n) {
			t.Fatalf("len %d encoded as %d", tc.n, n)
		}
	}
}
