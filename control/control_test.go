package control

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/liveengine/liveengine/control/auth"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
)

// TestStreamLifecycle walks the streamer's path against SQLite and
// PostgreSQL: register, login, create a stream, the key is on the bus, the
// engine reports it live, viewers arrive, the owner ends it.
func TestStreamLifecycle(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			url := ""
			if dialect == "postgres" {
				url = testsvc.Postgres(t)
			}
			bus := newBus(t)
			_, c := startServer(t, testConfig(t, url), bus)
			c.register("alice", "streamer")
			var tk tokens
			c.must(200, "POST", "/api/v1/auth/login", map[string]string{"login": "alice", "password": "password-alice"}, &tk)
			alice := c.as(tk.AccessToken)
			in := alice.createStream("First stream")
			if in.StreamKey == "" || !strings.HasSuffix(in.RTMPURL, "/live/"+in.StreamKey) || !strings.HasSuffix(in.WHIPURL, "/whip/"+in.StreamKey) {
				t.Fatalf("ingest urls: %+v", in)
			}
			if strings.Contains(in.HLSURL, in.StreamKey) || !strings.HasSuffix(in.HLSURL, "/hls/"+in.ID+"/index.m3u8") || !strings.HasSuffix(in.WHEPURL, "/whep/"+in.ID) {
				t.Fatalf("playback urls must use the public id: %+v", in)
			}
			g, err := bus.AuthorizePublish(bg, in.StreamKey)
			if err != nil || g.StreamID != in.ID || g.UserID != tk.User.ID {
				t.Fatalf("grant: %v %+v", err, g)
			}
			// The public view never carries the key.
			r := c.must(200, "GET", "/api/v1/streams/"+in.ID, nil, nil)
			if strings.Contains(string(r.body), in.StreamKey) {
				t.Fatal("public stream view leaks the key")
			}

			viewer := c.dial("")
			if env := viewer.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
				t.Fatalf("subscribe: %+v", env)
			}

			cmds, err := bus.Subscribe(bg, engine.TopicCommands)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmds.Close() })

			started := engine.Event{Kind: engine.EventPublishStarted, StreamID: in.ID, NodeID: "n1", Protocol: "rtmp", Time: time.Now()}
			if err := bus.AppendEvent(bg, started); err != nil {
				t.Fatal(err)
			}
			// The same event delivered twice changes nothing.
			if err := bus.AppendEvent(bg, started); err != nil {
				t.Fatal(err)
			}
			if env := viewer.expect("status", ""); !strings.Contains(string(env.Data), `"live"`) {
				t.Fatalf("status: %s", env.Data)
			}
			var live struct{ Streams []ingest }
			eventually(t, "stream live in discovery", func() bool {
				c.must(200, "GET", "/api/v1/discover/live", nil, &live)
				return len(live.Streams) == 1 && live.Streams[0].ID == in.ID
			})
			eventually(t, "viewer count in discovery", func() bool {
				_ = engine.PublishStats(bg, bus, engine.Stats{StreamID: in.ID, NodeID: "n1", Viewers: 3, Time: time.Now()})
				c.must(200, "GET", "/api/v1/discover/live", nil, &live)
				return len(live.Streams) == 1 && live.Streams[0].Viewers == 3
			})
			if env := viewer.expect("viewers", ""); !strings.Contains(string(env.Data), `"viewers":3`) {
				t.Fatalf("viewers: %s", env.Data)
			}
			var tr struct{ Streams []ingest }
			c.must(200, "GET", "/api/v1/discover/trending", nil, &tr)
			c.must(200, "GET", "/api/v1/discover/search?q=first", nil, &live)
			if len(tr.Streams) != 1 || len(live.Streams) != 1 {
				t.Fatalf("trending %d search %d", len(tr.Streams), len(live.Streams))
			}

			alice.must(200, "POST", "/api/v1/streams/"+in.ID+"/end", nil, nil)
			if _, err := bus.AuthorizePublish(bg, in.StreamKey); !errors.Is(err, engine.ErrKeyRevoked) {
				t.Fatalf("key after end: %v", err)
			}
			select {
			case m := <-cmds.C():
				var cmd engine.Command
				_ = json.Unmarshal(m.Payload, &cmd)
				if cmd.Kind != engine.CommandEnd || cmd.StreamID != in.ID {
					t.Fatalf("command %+v", cmd)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no end command on the bus")
			}
			if env := viewer.expect("status", ""); !strings.Contains(string(env.Data), `"ended"`) {
				t.Fatalf("status: %s", env.Data)
			}
			// The engine's stop arriving after the end leaves it ended.
			_ = bus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStopped, StreamID: in.ID, Time: time.Now()})
			var st ingest
			eventually(t, "ended and off discovery", func() bool {
				c.must(200, "GET", "/api/v1/streams/"+in.ID, nil, &st)
				c.must(200, "GET", "/api/v1/discover/live", nil, &live)
				return st.Status == "ended" && len(live.Streams) == 0
			})
		})
	}
}

// TestLiveOffline checks that the engine's stop takes a stream offline and a
// second start brings it back.
func TestLiveOffline(t *testing.T) {
	bus := newBus(t)
	_, c := startServer(t, testConfig(t, ""), bus)
	alice := c.as(c.register("alice", "streamer").AccessToken)
	in := alice.createStream("s")
	t0 := time.Now()
	for i, ev := range []engine.Event{
		{Kind: engine.EventPublishStarted, StreamID: in.ID, Time: t0},
		{Kind: engine.EventPublishStopped, StreamID: in.ID, Time: t0.Add(time.Second)},
		{Kind: engine.EventPublishStarted, StreamID: in.ID, Time: t0}, // stale redelivery
	} {
		if err := bus.AppendEvent(bg, ev); err != nil {
			t.Fatal(i, err)
		}
	}
	_ = bus.AppendEvent(bg, engine.Event{Kind: engine.EventNodeUp, NodeID: "marker"})
	var st ingest
	eventually(t, "offline", func() bool {
		c.must(200, "GET", "/api/v1/streams/"+in.ID, nil, &st)
		return st.Status == "offline"
	})
	_ = bus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStarted, StreamID: in.ID, Time: t0.Add(2 * time.Second)})
	eventually(t, "live again", func() bool {
		c.must(200, "GET", "/api/v1/streams/"+in.ID, nil, &st)
		return st.Status == "live"
	})
}

func TestTokensRejected(t *testing.T) {
	conf := testConfig(t, "")
	_, c := startServer(t, conf, newBus(t))
	viewer := c.register("vic", "viewer")
	root := c.register("root", "viewer") // made admin by config
	if root.User.Role != "admin" {
		t.Fatalf("root role %q", root.User.Role)
	}

	other, _ := auth.NewTokens([]byte(strings.Repeat("k", 32)), time.Minute)
	forged, _, _ := other.Issue(viewer.User.ID, "admin", "")
	expiredSigner, _ := auth.NewTokens([]byte(conf.JWTSecret), -time.Hour)
	expired, _, _ := expiredSigner.Issue(viewer.User.ID, "viewer", "")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": viewer.User.ID, "role": "admin", "iss": "liveengine",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for name, tc := range map[string]struct {
		token string
		code  string
	}{
		"missing":  {"", "unauthorized"},
		"garbage":  {"not-a-jwt", "invalid_token"},
		"forged":   {forged, "invalid_token"},
		"alg none": {none, "invalid_token"},
		"expired":  {expired, "token_expired"},
	} {
		r := c.as(tc.token).do("GET", "/api/v1/me", nil)
		if r.status != 401 || r.code() != tc.code {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// A bad token on a public route is refused too, so clients notice.
	if r := c.as(forged).do("GET", "/api/v1/discover/live", nil); r.status != 401 {
		t.Errorf("forged on public route: %d", r.status)
	}
	// Wrong role: a viewer cannot create streams or change roles.
	v := c.as(viewer.AccessToken)
	if r := v.do("POST", "/api/v1/streams", map[string]string{"title": "x"}); r.status != 403 {
		t.Errorf("viewer create stream: %d %s", r.status, r.body)
	}
	if r := v.do("PUT", "/api/v1/users/"+viewer.User.ID+"/role", map[string]string{"role": "admin"}); r.status != 403 {
		t.Errorf("viewer sets role: %d", r.status)
	}
	// Someone else's stream.
	streamer := c.as(c.register("sam", "streamer").AccessToken)
	in := streamer.createStream("mine")
	if r := v.do("POST", "/api/v1/streams/"+in.ID+"/end", nil); r.status != 403 {
		t.Errorf("end other's stream: %d", r.status)
	}
	if r := v.do("GET", "/api/v1/streams/"+in.ID+"/key", nil); r.status != 403 {
		t.Errorf("read other's key: %d", r.status)
	}
	// An admin may promote; the new role applies from the next token.
	c.as(root.AccessToken).must(204, "PUT", "/api/v1/users/"+viewer.User.ID+"/role", map[string]string{"role": "streamer"}, nil)
	var tk tokens
	c.must(200, "POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": viewer.RefreshToken}, &tk)
	c.as(tk.AccessToken).createStream("promoted")
	// WebSocket with a forged token is refused at the handshake.
	if _, resp, err := dialRaw(c.ws + "?access_token=" + forged); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("ws forged token: %v", err)
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	conf := testConfig(t, "")
	conf.MaxBodyBytes = 64 << 10
	s, c := startServer(t, conf, newBus(t))
	countUsers := func() int {
		var n int
		if err := s.DB().QueryRow("SELECT COUNT(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for name, tc := range map[string]struct {
		body   any
		status int
	}{
		"garbage json":   {"{not json", 400},
		"array":          {"[1,2,3]", 400},
		"empty":          {"", 400},
		"unknown field":  {`{"username":"abc","email":"a@b.c","password":"password1","admin":true}`, 400},
		"trailing":       {`{"username":"abc","email":"a@b.c","password":"password1"} {}`, 400},
		"sql username":   {map[string]string{"username": "x'; DROP TABLE users; --", "email": "a@b.c", "password": "password1"}, 400},
		"sql email":      {map[string]string{"username": "abc", "email": "a@b.c' OR '1'='1", "password": "password1"}, 400},
		"short password": {map[string]string{"username": "abc", "email": "a@b.c", "password": "x"}, 400},
		"self admin":     {map[string]string{"username": "abc", "email": "a@b.c", "password": "password1", "role": "admin"}, 400},
		"huge body":      {strings.Repeat("a", 100<<10), 413},
		"nul bytes":      {"{\"username\":\"a\x00b\",\"email\":\"a@b.c\",\"password\":\"password1\"}", 400},
	} {
		r := c.do("POST", "/api/v1/auth/register", tc.body)
		if r.status != tc.status || r.code() == "" {
			t.Errorf("%s: status %d (want %d) body %s", name, r.status, tc.status, r.body)
		}
	}
	if n := countUsers(); n != 0 {
		t.Fatalf("%d users stored from bad input", n)
	}
	// SQL metacharacters in a login and a search are just text.
	if r := c.do("POST", "/api/v1/auth/login", map[string]string{"login": "' OR 1=1 --", "password": "x' OR '1'='1"}); r.status != 401 {
		t.Errorf("sql login: %d", r.status)
	}
	if r := c.do("GET", "/api/v1/discover/search?q=%27%3B%20DROP%20TABLE%20streams%3B--", nil); r.status != 200 {
		t.Errorf("sql search: %d %s", r.status, r.body)
	}
	alice := c.as(c.register("alice", "streamer").AccessToken)
	in := alice.createStream("s")
	if r := alice.do("POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": strings.Repeat("x", 501)}); r.status != 400 {
		t.Errorf("long comment: %d", r.status)
	}
	if r := alice.do("POST", "/api/v1/streams", map[string]any{"title": "t", "visibility": "everyone"}); r.status != 400 {
		t.Errorf("bad visibility: %d", r.status)
	}
	if r := alice.do("GET", "/api/v1/discover/live?limit=abc", nil); r.status != 400 {
		t.Errorf("bad limit: %d", r.status)
	}
	if r := c.do("GET", "/api/v1/nope", nil); r.status != 404 || r.code() != "no_route" {
		t.Errorf("unknown route: %d %s", r.status, r.body)
	}
	if r := c.do("DELETE", "/api/v1/discover/live", nil); r.status != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("wrong method: %d %v", r.status, r.header)
	}
	var n int
	_ = s.DB().QueryRow("SELECT COUNT(*) FROM comments").Scan(&n)
	if n != 0 || countUsers() != 1 {
		t.Fatalf("bad input stored: %d comments, %d users", n, countUsers())
	}
}

func TestRefreshRotationAndSessions(t *testing.T) {
	_, c := startServer(t, testConfig(t, ""), newBus(t))
	first := c.register("alice", "viewer")
	var second tokens
	c.must(200, "POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": first.RefreshToken}, &second)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == "" {
		t.Fatal("refresh token not rotated")
	}
	// Reusing the old token revokes the session: the new one dies too.
	if r := c.do("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": first.RefreshToken}); r.status != 401 || r.code() != "refresh_reused" {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": second.RefreshToken}); r.status != 401 {
		t.Fatalf("after reuse: %d", r.status)
	}
	// Two logins, list them, revoke one from the other.
	var a, b tokens
	c.must(200, "POST", "/api/v1/auth/login", map[string]string{"login": "alice@example.com", "password": "password-alice"}, &a)
	c.must(200, "POST", "/api/v1/auth/login", map[string]string{"login": "alice", "password": "password-alice"}, &b)
	var list struct {
		Sessions []struct {
			ID      string
			Current bool
		}
	}
	c.as(a.AccessToken).must(200, "GET", "/api/v1/auth/sessions", nil, &list)
	if len(list.Sessions) != 2 {
		t.Fatalf("sessions: %+v", list)
	}
	var other string
	for _, s := range list.Sessions {
		if !s.Current {
			other = s.ID
		}
	}
	c.as(a.AccessToken).must(204, "DELETE", "/api/v1/auth/sessions/"+other, nil, nil)
	if r := c.do("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": b.RefreshToken}); r.status != 401 {
		t.Fatalf("revoked session refreshed: %d", r.status)
	}
	c.as(a.AccessToken).must(204, "POST", "/api/v1/auth/logout", nil, nil)
	if r := c.do("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": a.RefreshToken}); r.status != 401 {
		t.Fatalf("logged-out session refreshed: %d", r.status)
	}
	if r := c.do("POST", "/api/v1/auth/login", map[string]string{"login": "alice", "password": "wrong-password"}); r.status != 401 || r.code() != "bad_credentials" {
		t.Fatalf("wrong password: %d %s", r.status, r.body)
	}
}

func TestAuthRateLimit(t *testing.T) {
	conf := testConfig(t, "")
	conf.Limits.AuthPerMinute = 3
	_, c := startServer(t, conf, newBus(t))
	var last response
	for i := 0; i < 10; i++ {
		last = c.do("POST", "/api/v1/auth/login", map[string]string{"login": "nobody", "password": "password"})
		if last.status == 429 {
			break
		}
	}
	if last.status != 429 || last.header.Get("Retry-After") == "" || last.code() != "rate_limited" {
		t.Fatalf("no 429: %d %v %s", last.status, last.header, last.body)
	}
}

func TestProfilesAndFollows(t *testing.T) {
	_, c := startServer(t, testConfig(t, ""), newBus(t))
	a := c.register("alice", "streamer")
	b := c.register("bob", "viewer")
	alice := c.as(a.AccessToken)
	alice.must(200, "PATCH", "/api/v1/me", map[string]string{"display_name": "Alice", "bio": "hi", "avatar_url": "https://example.com/a.png"}, nil)
	if r := alice.do("PATCH", "/api/v1/me", map[string]string{"avatar_url": "javascript:alert(1)"}); r.status != 400 {
		t.Fatalf("bad avatar: %d", r.status)
	}
	ws := c.dial(a.AccessToken)
	c.as(b.AccessToken).must(204, "PUT", "/api/v1/users/"+a.User.ID+"/follow", nil, nil)
	if env := ws.expect("followed", ""); !strings.Contains(string(env.Data), b.User.ID) {
		t.Fatalf("followed: %s", env.Data)
	}
	var u struct {
		DisplayName string `json:"display_name"`
		Followers   int
		Email       string
	}
	c.must(200, "GET", "/api/v1/users/"+a.User.ID, nil, &u)
	if u.DisplayName != "Alice" || u.Followers != 1 || u.Email != "" {
		t.Fatalf("profile: %+v", u)
	}
	c.as(b.AccessToken).must(204, "DELETE", "/api/v1/users/"+a.User.ID+"/follow", nil, nil)
	c.must(200, "GET", "/api/v1/users/"+a.User.ID, nil, &u)
	if u.Followers != 0 {
		t.Fatalf("unfollow: %+v", u)
	}
}

func TestCollector(t *testing.T) {
	s, c := startServer(t, testConfig(t, ""), newBus(t))
	c.dial("")
	c.must(200, "GET", "/api/v1/health", nil, nil)
	reg := prometheus.NewRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "metrics", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, mf := range mfs {
			switch mf.GetName() {
			case "liveengine_control_ws_connections":
				if mf.Metric[0].GetGauge().GetValue() == 1 {
					found++
				}
			case "liveengine_control_http_requests_total":
				found++
			}
		}
		return found == 2
	})
}
