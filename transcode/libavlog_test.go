package transcode

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/asticode/go-astiav"

	"github.com/liveengine/liveengine/engine"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRouteLibavLogs: a decoder's complaint about a corrupt packet lands in
// slog, not on stderr.
func TestRouteLibavLogs(t *testing.T) {
	var buf lockedBuffer
	RouteLibavLogs(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() {
		astiav.ResetLogCallback()
		astiav.SetLogLevel(astiav.LogLevelError)
	})
	dir := t.TempDir()
	src := filepath.Join(dir, "tone.ogg")
	runCmd(t, "ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "0.2", "-ac", "2", "-c:a", "libopus", src)
	track, _ := readOpusFile(t, src)
	b, err := NewAudioBridge(track, engine.CodecAAC)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = b.Convert(&engine.Unit{Payload: []byte{0xff, 0xff, 0xff, 0xff, 0, 1}}, func(*engine.Unit) {})
	out := buf.String()
	t.Log(out)
	if !strings.Contains(out, "component=libav") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("libav error not routed to slog: %q", out)
	}
}
