package control

import (
	"net/http"
	"strings"
	"testing"
)

// The demo page is served at / and only there; the API keeps its JSON 404s
// and POST / is not the page.
func TestDemoPage(t *testing.T) {
	_, c := startServer(t, testConfig(t, ""), newBus(t))
	for _, p := range []string{"/", "/index.html"} {
		r := c.do(http.MethodGet, p, nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), "/api/v1/ws") {
			t.Fatalf("GET %s: %d %s %.80s", p, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	if r := c.do(http.MethodPost, "/", "{}"); r.status != http.StatusNotFound || r.code() != "no_route" {
		t.Fatalf("POST /: %d %s", r.status, r.body)
	}
	if r := c.do(http.MethodGet, "/demo.html", nil); r.status != http.StatusNotFound {
		t.Fatalf("GET /demo.html: %d", r.status)
	}
}
