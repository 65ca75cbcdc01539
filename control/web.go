package control

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

// demoPage is a single static page over the API (sign up, watch, chat,
// sandbox top-up, gifts) so a new user can try the control plane from a
// browser; it calls only the public /api/v1 routes.
//
//go:embed web/index.html
var demoPage []byte

// serveWeb answers GET / with the demo page; it reports whether it did.
func serveWeb(ctx *fasthttp.RequestCtx, method, path string) bool {
	if (method != fasthttp.MethodGet && method != fasthttp.MethodHead) || (path != "/" && path != "/index.html") {
		return false
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBody(demoPage)
	return true
}
