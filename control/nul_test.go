package control

import (
	"testing"
)

// PostgreSQL text holds neither NUL bytes nor invalid UTF-8. Such input in
// a path, a query or a JSON string is the client's mistake: a 4xx on every
// database, never a 500 (on PostgreSQL every one of these was a 500,
// several of them on public routes).
func TestNulAndBrokenTextRefused(t *testing.T) {
	dialects(t, func(t *testing.T, dbURL string) {
		_, c := startServer(t, testConfig(t, dbURL), newBus(t))
		tk := c.register("alice", "streamer")
		alice := c.as(tk.AccessToken)
		in := alice.createStream("probe")
		for _, p := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/api/v1/streams/ab%00cd", nil},
			{"GET", "/api/v1/streams/ab%FFcd", nil},
			{"GET", "/api/v1/users/ab%00cd", nil},
			{"DELETE", "/api/v1/auth/sessions/a%00b", nil},
			{"GET", "/api/v1/discover/live?category=a%00b", nil},
			{"GET", "/api/v1/discover/live?category=a%FFb", nil},
			{"GET", "/api/v1/discover/live?user_id=a%00b", nil},
			{"GET", "/api/v1/discover/search?q=a%00b", nil},
			{"POST", "/api/v1/auth/login", `{"login":"a\u0000b","password":"password-x"}`},
			{"POST", "/api/v1/auth/register", `{"username":"bob","email":"bob@example.com","password":"password-bob","display_name":"x\u0000"}`},
			{"POST", "/api/v1/streams", `{"title":"a\u0000b"}`},
			{"PATCH", "/api/v1/streams/" + in.ID, `{"tags":["x\u0000"]}`},
			{"PATCH", "/api/v1/me", `{"bio":"a\u0000b"}`},
			{"POST", "/api/v1/streams/" + in.ID + "/comments", `{"body":"a\u0000b"}`},
			{"POST", "/api/v1/streams/" + in.ID + "/sanctions", `{"user_id":"x\u0000","kind":"ban"}`},
		} {
			if r := alice.do(p.method, p.path, p.body); r.status/100 != 4 {
				t.Errorf("%s %s %v: %d %s, want a 4xx", p.method, p.path, p.body, r.status, r.body)
			}
		}
		// The WebSocket takes room ids and comments without the HTTP layer.
		ws := c.dial(tk.AccessToken)
		if env := ws.request(map[string]string{"type": "subscribe", "room": "a\x00b"}); env.Type != "error" || env.Error.Code == "internal" {
			t.Errorf("subscribe to a NUL room: %+v %+v", env, env.Error)
		}
		if env := ws.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
			t.Fatalf("subscribe: %+v", env)
		}
		if env := ws.request(map[string]string{"type": "comment", "room": in.ID, "body": "a\x00b"}); env.Type != "error" || env.Error.Code == "internal" {
			t.Errorf("NUL comment over the WebSocket: %+v %+v", env, env.Error)
		}
	})
}
