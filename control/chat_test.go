package control

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/redisbus"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// twoServers starts two control servers sharing one database and the given
// buses, as two control processes behind a load balancer would.
func twoServers(t *testing.T, busA, busB engine.Bus) (*client, *client) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "shared.db")
	_, a := startServer(t, testConfig(t, db), busA)
	_, b := startServer(t, testConfig(t, db), busB)
	return a, b
}

func TestChatAcrossServersLocalBus(t *testing.T) {
	bus := newBus(t)
	a, b := twoServers(t, bus, bus)
	chatAcross(t, a, b)
}

// TestChatAcrossServersRedis runs the same path over a real redis-server,
// each control server with its own connection, as separate processes have.
func TestChatAcrossServersRedis(t *testing.T) {
	url := testsvc.Redis(t)
	open := func() engine.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rb, err := redisbus.New(ctx, url, redisbus.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rb.Close() })
		return rb
	}
	a, b := twoServers(t, open(), open())
	chatAcross(t, a, b)
}

func chatAcross(t *testing.T, a, b *client) {
	alice := a.register("alice", "streamer")
	vic := b.register("vic", "viewer")
	troll := a.register("troll", "viewer")
	in := a.as(alice.AccessToken).createStream("chat")

	// Vic watches on server B; the troll on server A.
	vws := b.dial(vic.AccessToken)
	if env := vws.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
		t.Fatalf("subscribe: %+v", env)
	}
	tws := a.dial(troll.AccessToken)
	if env := tws.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
		t.Fatalf("subscribe: %+v", env)
	}
	// The room subscription on B may take a moment to reach Redis; retry
	// the comment until it arrives rather than sleeping.
	got := make(chan string, 16)
	go func() {
		for {
			var env envelope
			if err := vws.conn.ReadJSON(&env); err != nil {
				close(got)
				return
			}
			if env.Type == "comment" {
				got <- string(env.Data)
			}
		}
	}()
	aliceA := a.as(alice.AccessToken)
	deadline := time.After(30 * time.Second)
	var body string
send:
	for i := 0; ; i++ {
		aliceA.must(201, "POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "hello from A"}, nil)
		select {
		case body = <-got:
			break send
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatal("comment from server A never reached the client on server B")
		}
	}
	if !strings.Contains(body, "hello from A") || !strings.Contains(body, `"username":"alice"`) {
		t.Fatalf("comment: %s", body)
	}

	// The troll comments over WebSocket on A; Vic on B sees it.
	if env := tws.request(map[string]string{"type": "comment", "room": in.ID, "body": "first!"}); env.Type != "ack" {
		t.Fatalf("ws comment: %+v", env)
	}
	waitComment(t, got, "first!")

	// Alice bans the troll: refused by REST and WebSocket, cannot rejoin.
	aliceA.must(204, "POST", "/api/v1/streams/"+in.ID+"/sanctions", map[string]string{"user_id": troll.User.ID, "kind": "ban"}, nil)
	if r := a.as(troll.AccessToken).do("POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "spam"}); r.status != 403 || r.code() != "banned" {
		t.Fatalf("banned REST comment: %d %s", r.status, r.body)
	}
	eventually(t, "banned user's ws comment refused", func() bool {
		env := tws.request(map[string]string{"type": "comment", "room": in.ID, "body": "spam"})
		return env.Type == "error" && (env.Error.Code == "banned" || env.Error.Code == "not_subscribed")
	})
	if env := tws.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "error" || env.Error.Code != "banned" {
		t.Fatalf("banned rejoin: %+v", env)
	}
	// Muted: may stay, may not write.
	aliceA.must(204, "POST", "/api/v1/streams/"+in.ID+"/sanctions", map[string]any{"user_id": vic.User.ID, "kind": "mute", "duration_seconds": 600}, nil)
	if r := b.as(vic.AccessToken).do("POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "hi"}); r.status != 403 || r.code() != "muted" {
		t.Fatalf("muted REST comment: %d %s", r.status, r.body)
	}
	aliceA.must(204, "DELETE", "/api/v1/streams/"+in.ID+"/sanctions/"+vic.User.ID+"?kind=mute", nil, nil)
	b.as(vic.AccessToken).must(201, "POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "unmuted"}, nil)
	waitComment(t, got, "unmuted")

	// Comments list and moderator deletion.
	var list struct {
		Comments []struct{ ID, Body string }
	}
	b.must(200, "GET", "/api/v1/streams/"+in.ID+"/comments", nil, &list)
	if len(list.Comments) < 3 {
		t.Fatalf("comments: %+v", list)
	}
	aliceA.must(204, "DELETE", "/api/v1/streams/"+in.ID+"/comments/"+list.Comments[0].ID, nil, nil)
	if r := b.as(vic.AccessToken).do("DELETE", "/api/v1/streams/"+in.ID+"/comments/"+list.Comments[1].ID, nil); r.status != 403 {
		t.Fatalf("non-moderator delete: %d", r.status)
	}
	aliceA.must(204, "POST", "/api/v1/streams/"+in.ID+"/moderators", map[string]string{"user_id": vic.User.ID}, nil)
	b.as(vic.AccessToken).must(204, "DELETE", "/api/v1/streams/"+in.ID+"/comments/"+list.Comments[1].ID, nil, nil)
	b.as(vic.AccessToken).must(204, "POST", "/api/v1/streams/"+in.ID+"/reactions", map[string]string{"emoji": "heart"}, nil)
	if r := b.as(vic.AccessToken).do("POST", "/api/v1/streams/"+in.ID+"/reactions", map[string]string{"emoji": "<script>"}); r.status != 400 {
		t.Fatalf("bad emoji: %d", r.status)
	}
}

func waitComment(t *testing.T, got <-chan string, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case body, ok := <-got:
			if !ok {
				t.Fatalf("connection closed before %q", want)
			}
			if strings.Contains(body, want) {
				return
			}
		case <-deadline:
			t.Fatalf("comment %q never arrived", want)
		}
	}
}

func TestWebSocketProtocolErrors(t *testing.T) {
	_, c := startServer(t, testConfig(t, ""), newBus(t))
	alice := c.register("alice", "streamer")
	in := c.as(alice.AccessToken).createStream("s")
	anon := c.dial("")
	for _, tc := range []struct {
		msg  map[string]string
		code string
	}{
		{map[string]string{"type": "comment", "room": in.ID, "body": "x"}, "unauthorized"},
		{map[string]string{"type": "subscribe"}, "bad_message"},
		{map[string]string{"type": "subscribe", "room": "nope"}, "not_found"},
		{map[string]string{"type": "dance"}, "bad_message"},
		{map[string]string{"type": "auth", "token": "forged"}, "invalid_token"},
	} {
		env := anon.request(tc.msg)
		if env.Type != "error" || env.Error.Code != tc.code {
			t.Errorf("%v: %+v", tc.msg, env)
		}
	}
	if err := anon.conn.WriteMessage(1, []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	if env := anon.expect("error", ""); env.Error.Code != "bad_message" {
		t.Fatalf("garbage: %+v", env)
	}
	// Sign in on the open connection, then comment.
	if env := anon.request(map[string]string{"type": "auth", "token": alice.AccessToken}); env.Type != "ack" {
		t.Fatalf("auth: %+v", env)
	}
	anon.request(map[string]string{"type": "subscribe", "room": in.ID})
	if env := anon.request(map[string]string{"type": "comment", "room": in.ID, "body": "hi"}); env.Type != "ack" {
		t.Fatalf("comment: %+v", env)
	}
	anon.expect("comment", "")
	// A message over the size limit closes the connection.
	_ = anon.conn.WriteMessage(1, []byte(`{"type":"comment","body":"`+strings.Repeat("x", 10000)+`"}`))
	_ = anon.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := anon.conn.ReadMessage(); err != nil {
			break
		}
	}
}

// TestRestartLosesNoEvents stops the control server, lets the engine side
// append lifecycle events to the Redis stream while it is down, and checks
// a new control process applies every one of them.
func TestRestartLosesNoEvents(t *testing.T) {
	url := testsvc.Redis(t)
	open := func() engine.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rb, err := redisbus.New(ctx, url, redisbus.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rb.Close() })
		return rb
	}
	engineBus := open()
	db := "sqlite://" + filepath.Join(t.TempDir(), "shared.db")
	first, c := startServer(t, testConfig(t, db), open())
	alice := c.as(c.register("alice", "streamer").AccessToken)
	ids := []string{alice.createStream("one").ID, alice.createStream("two").ID, alice.createStream("three").ID}
	// The first stream goes live while the server runs.
	_ = engineBus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStarted, StreamID: ids[0], Time: time.Now()})
	var st ingest
	eventually(t, "first live", func() bool {
		c.must(200, "GET", "/api/v1/streams/"+ids[0], nil, &st)
		return st.Status == "live"
	})
	first.Close()

	// While no control process runs, the engine keeps reporting.
	now := time.Now()
	_ = engineBus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStopped, StreamID: ids[0], Time: now})
	_ = engineBus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStarted, StreamID: ids[1], Time: now})
	_ = engineBus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStarted, StreamID: ids[2], Time: now})

	_, c2 := startServer(t, testConfig(t, db), open())
	want := map[string]string{ids[0]: "offline", ids[1]: "live", ids[2]: "live"}
	for id, status := range want {
		eventually(t, id+" "+status, func() bool {
			c2.must(200, "GET", "/api/v1/streams/"+id, nil, &st)
			return st.Status == status
		})
	}
}

// TestSlowClientDropped checks a client that stops reading is disconnected
// once its queue is full, while a reading client in the same room keeps
// receiving everything.
func TestSlowClientDropped(t *testing.T) {
	conf := testConfig(t, "")
	conf.WS.SendQueue = 8
	s, c := startServer(t, conf, newBus(t))
	alice := c.as(c.register("alice", "streamer").AccessToken)
	in := alice.createStream("s")
	slow := c.dial("")
	slow.request(map[string]string{"type": "subscribe", "room": in.ID})
	fast := c.dial("")
	fast.request(map[string]string{"type": "subscribe", "room": in.ID})
	var received atomic.Int64
	go func() {
		for {
			_, msg, err := fast.conn.ReadMessage()
			if err != nil {
				return
			}
			if strings.Contains(string(msg[:min(len(msg), 40)]), `"type":"big"`) {
				received.Add(1)
			}
		}
	}()
	big := strings.Repeat("x", 256<<10)
	// One message at a time, each read by the fast client before the next:
	// only the client that does not read falls behind.
	for i := 1; s.Hub().Dropped() == 0; i++ {
		if i > 1000 {
			t.Fatal("slow client never dropped")
		}
		if err := s.PushRoom(bg, in.ID, "big", big); err != nil {
			t.Fatal(err)
		}
		eventually(t, "fast client reads", func() bool { return received.Load() >= int64(i) || s.Hub().Dropped() > 0 })
	}
	eventually(t, "one connection left", func() bool { return s.Hub().Connections() == 1 })
	// The survivor is the fast client: it still receives.
	before := received.Load()
	if err := s.PushRoom(bg, in.ID, "big", "after"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "fast client still served", func() bool { return received.Load() > before })
	// The hub closes the dropped client's socket itself (fasthttp keeps
	// hijacked connections open): reading what was queued ends in EOF, not
	// in the deadline.
	_ = slow.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	var err error
	for err == nil {
		_, _, err = slow.conn.ReadMessage()
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("dropped client's socket still open: %v", err)
	}
}
