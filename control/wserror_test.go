package control

import (
	"strings"
	"testing"
)

// A failure the server did not expect (here: the database is gone) reaches
// a WebSocket client as "internal" without its text, as over HTTP; the
// text (SQL errors, table names) is for the log only.
func TestWebSocketHidesInternalErrors(t *testing.T) {
	s, c := startServer(t, testConfig(t, ""), newBus(t))
	tk := c.register("alice", "streamer")
	in := c.as(tk.AccessToken).createStream("s")
	ws := c.dial(tk.AccessToken)
	if env := ws.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
		t.Fatalf("subscribe: %+v", env)
	}
	s.db.Close()
	env := ws.request(map[string]string{"type": "comment", "room": in.ID, "body": "hi"})
	if env.Type != "error" || env.Error.Code != "internal" || strings.Contains(env.Error.Message, "sql") {
		t.Fatalf("comment with the database closed: %+v %+v", env, env.Error)
	}
}
