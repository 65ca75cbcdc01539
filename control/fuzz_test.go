package control

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRouterMatch feeds arbitrary paths to the route matcher: it must never
// panic, and a match must bind every parameter to a non-empty segment
// without a slash.
func FuzzRouterMatch(f *testing.F) {
	var r router
	noop := func(*fasthttp.RequestCtx) error { return nil }
	for _, p := range []string{"/api/v1/streams/{id}", "/api/v1/streams/{id}/comments/{comment_id}", "/api/v1/me", "/api/v1/users/{id}/follow"} {
		r.add("GET", p, Public, noop)
	}
	for _, seed := range []string{"/api/v1/streams/abc", "/api/v1/streams//comments/x", "/", "", "//", "/api/v1/me/", "/api/v1/streams/%2F/comments/{x}"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, params, _ := r.match("GET", path)
		if rt == nil {
			return
		}
		for k, v := range params {
			if v == "" || strings.Contains(v, "/") {
				t.Fatalf("%q: param %s = %q", path, k, v)
			}
		}
	})
}

// FuzzDecode checks the strict JSON body decoder never panics and never
// accepts a body with trailing data.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{"username":"a","email":"b","password":"c"}`, `{}`, `[]`, `{"a":1}`, `{"login":"x"} {}`, "\x00", `{"login":"\u0000"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetBody(body)
		var req loginRequest
		if err := decode(&ctx, &req); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("decode returned a non-API error %T", err)
			}
		}
	})
}
