package control

import (
	"net/http"
	"strings"
	"testing"

	"github.com/liveengine/liveengine/internal/testsvc"
)

// dialects runs f on SQLite and on PostgreSQL.
func dialects(t *testing.T, f func(t *testing.T, dbURL string)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			url := ""
			if d == "postgres" {
				url = testsvc.Postgres(t)
			}
			f(t, url)
		})
	}
}

// The User-Agent is stored cut to 200 bytes; a cut inside a UTF-8 sequence
// (or a client sending raw non-UTF-8 bytes) must not make PostgreSQL refuse
// the session and fail the login.
func TestLoginWithOddUserAgent(t *testing.T) {
	dialects(t, func(t *testing.T, dbURL string) {
		_, c := startServer(t, testConfig(t, dbURL), newBus(t))
		c.register("alice", "viewer")
		for _, ua := range []string{strings.Repeat("a", 199) + "é", "agent \xff\xfe"} {
			req, _ := http.NewRequest("POST", c.base+"/api/v1/auth/login", strings.NewReader(`{"login":"alice","password":"password-alice"}`))
			req.Header.Set("User-Agent", ua)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("login with user agent %q: status %d", ua, resp.StatusCode)
			}
		}
	})
}
