package control

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Behind a proxy that appends to X-Forwarded-For (nginx's
// $proxy_add_x_forwarded_for, HAProxy, cloud load balancers), the leftmost
// entries are whatever the client sent; only the last one is the address
// the proxy saw. A client forging a new leftmost entry per request must not
// escape the per-address sign-in limit.
func TestForgedForwardedForDoesNotEscapeAuthLimit(t *testing.T) {
	conf := testConfig(t, "")
	conf.TrustProxy = true
	conf.Limits.AuthPerMinute = 3
	_, c := startServer(t, conf, newBus(t))
	limited := false
	for i := range 6 {
		req, _ := http.NewRequest("POST", c.base+"/api/v1/auth/login", strings.NewReader(`{"login":"nobody","password":"password-x"}`))
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d, 203.0.113.7", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		limited = limited || resp.StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("6 sign-ins from one proxied address with forged X-Forwarded-For heads were never rate limited (limit 3)")
	}
}
