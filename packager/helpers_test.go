package packager

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/valyala/fasthttp"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// testServer is a packager hooked into an engine and served by a real
// fasthttp server on a loopback port.
type testServer struct {
	eng  *engine.Engine
	pk   *Packager
	base string // http://127.0.0.1:PORT
}

func newTestServer(t *testing.T, conf Config) *testServer {
	t.Helper()
	eng := enginetest.NewEngine(t)
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pk, err := New(conf, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: pk.Handle, Name: "liveengine-test"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		pk.Close() // ends held requests, so Shutdown does not wait for them
		_ = srv.Shutdown()
		<-done
	})
	return &testServer{eng: eng, pk: pk, base: "http://" + ln.Addr().String()}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// publishRendition publishes the clip at path as rendition name of group,
// as the transcoder would.
func publishRendition(t *testing.T, eng *engine.Engine, group, name, path string, o enginetest.PublishOptions) *engine.Publisher {
	t.Helper()
	m, err := enginetest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := eng.PublishRendition(group, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		pub.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pub.Close()
		enginetest.PlayMedia(pub.Context(), pub, m, o)
	}()
	t.Cleanup(func() {
		pub.Close()
		<-done
	})
	return pub
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, url string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mediaPlaylist fetches and parses a media playlist; the gohlslib parser
// needs at least one complete segment, so callers wait for one first.
func mediaPlaylist(t *testing.T, url string) (*playlist.Media, response) {
	t.Helper()
	res := get(t, url)
	if res.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.status, res.body)
	}
	var m playlist.Media
	if err := m.Unmarshal(res.body); err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, res.body)
	}
	return &m, res
}

// waitSegments waits until the playlist at url lists at least n complete
// segments and returns it.
func waitSegments(t *testing.T, url string, n int) *playlist.Media {
	t.Helper()
	var m *playlist.Media
	waitFor(t, fmt.Sprintf("%d segments in %s", n, url), 60*time.Second, func() bool {
		res := get(t, url)
		if res.status != http.StatusOK || strings.Count(string(res.body), "#EXTINF:") < n {
			return false
		}
		m, _ = mediaPlaylist(t, url)
		return len(m.Segments) >= n
	})
	return m
}

func testConfig() Config {
	c := DefaultConfig()
	c.EndedRetention = 20 * time.Second
	return c
}
