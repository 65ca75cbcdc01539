package transcode

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/asticode/go-astiav"
	"golang.org/x/time/rate"
)

// RouteLibavLogs sends libav's own messages (warnings and errors, such as
// a decoder's complaint about a corrupt slice) to log instead of stderr.
// libav reports per packet, so lines beyond 10 a second (bursts of 50) are
// counted, not written; the next written line carries the count. Call it
// once at start: libav's log callback is process-wide.
func RouteLibavLogs(log *slog.Logger) {
	log = log.With("component", "libav")
	lim := rate.NewLimiter(10, 50)
	var suppressed atomic.Int64
	astiav.SetLogLevel(astiav.LogLevelWarning)
	astiav.SetLogCallback(func(c astiav.Classer, l astiav.LogLevel, _, msg string) {
		if l > astiav.LogLevelWarning {
			return
		}
		if !lim.Allow() {
			suppressed.Add(1)
			return
		}
		attrs := []any{}
		if c != nil {
			if cl := c.Class(); cl != nil {
				attrs = append(attrs, "class", cl.Name())
			}
		}
		if n := suppressed.Swap(0); n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
		level := slog.LevelWarn
		if l <= astiav.LogLevelError {
			level = slog.LevelError
		}
		log.Log(context.Background(), level, strings.TrimSpace(msg), attrs...)
	})
}
