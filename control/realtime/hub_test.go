package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
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
	r := &rules{}
	h, err := New(DefaultConfig(), bus, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.hub = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h.Handle}
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
}
