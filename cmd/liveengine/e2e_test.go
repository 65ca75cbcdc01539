package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/liveengine/liveengine/internal/testsvc"
)

// The end-to-end tests run the real binary as a user would: built once,
// started on free loopback ports, fed by the ffmpeg CLI, read over HTTP and
// checked with ffprobe.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "liveengine-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "liveengine")
	build := exec.Command("go", "build", "-race", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build liveengine:", err)
		os.Exit(1)
	}
	code := testsvc.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is a running liveengine process.
type server struct {
	cmd      *exec.Cmd
	rtmpPort int
	httpPort int
	apiPort  int
	logs     *syncBuffer
	exited   chan struct{}
	exitErr  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *server) httpURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.httpPort, path)
}

func (s *server) apiURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.apiPort, path)
}

func (s *server) rtmpURL(key string) string {
	return fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", s.rtmpPort, key)
}

// startServer starts `liveengine mode` with env overrides on free ports and
// waits until it answers. A port picked free can be taken before the
// server binds it (ports come from the ephemeral range other tests'
// connections use too), so a start that fails with "address already in
// use" is tried again on fresh ports.
func startServer(t *testing.T, mode string, env ...string) *server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, portTaken := tryStartServer(t, mode, env...)
		if !portTaken {
			return s
		}
		if attempt == 3 {
			t.Fatalf("server could not bind its ports in 3 attempts:\n%s", s.logs.String())
		}
		t.Logf("a port was taken before the server bound it; retrying on fresh ports")
	}
}

// tryStartServer is one attempt of startServer; portTaken reports a server
// that exited because one of its ports was in use.
func tryStartServer(t *testing.T, mode string, env ...string) (s *server, portTaken bool) {
	t.Helper()
	s = &server{rtmpPort: freePort(t), httpPort: freePort(t), apiPort: freePort(t), logs: &syncBuffer{}, exited: make(chan struct{})}
	dataDir := t.TempDir()
	s.cmd = exec.Command(binPath, mode, "-config", "")
	s.cmd.Dir = dataDir
	s.cmd.Env = append(os.Environ(),
		fmt.Sprintf("LIVEENGINE_RTMP_ADDR=127.0.0.1:%d", s.rtmpPort),
		fmt.Sprintf("LIVEENGINE_HTTP_ADDR=127.0.0.1:%d", s.httpPort),
		fmt.Sprintf("LIVEENGINE_CONTROL_ADDR=127.0.0.1:%d", s.apiPort),
		"LIVEENGINE_CONTROL_DATABASE_URL=sqlite://"+filepath.Join(dataDir, "liveengine.db"),
		"LIVEENGINE_WEBRTC_ICE_UDP_PORT=0",
		"LIVEENGINE_WEBRTC_ICE_TCP_PORT=0",
		"LIVEENGINE_TRANSCODE_ENABLED=false",
	)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs.String())
		}
	})
	health := s.httpURL("/healthz")
	if mode == "control" {
		health = s.apiURL("/api/v1/health")
	}
	waitUntil(t, 60*time.Second, "server answers "+health, func() bool {
		select {
		case <-s.exited:
			if strings.Contains(s.logs.String(), "address already in use") {
				portTaken = true
				return true
			}
			t.Fatalf("server exited early: %v\n%s", s.exitErr, s.logs.String())
		default:
		}
		resp, err := http.Get(health)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s, portTaken
}

// stop sends SIGTERM and returns the exit error.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not exit within 60 s of SIGTERM\n%s", s.logs.String())
		return nil
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pushRTMP starts the ffmpeg CLI publishing a generated pattern.
// ffmpegProc is a running ffmpeg CLI; done is closed when it exits.
type ffmpegProc struct {
	*exec.Cmd
	done chan struct{}
}

func pushRTMP(t *testing.T, url string, extra ...string) *ffmpegProc {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "60",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", "60", "-b:v", "2500k",
		"-c:a", "aac", "-b:a", "128k"}
	args = append(args, extra...)
	args = append(args, "-f", "flv", url)
	cmd := exec.Command("ffmpeg", args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("ffmpeg stderr:\n%s", stderr.String())
		}
	})
	return &ffmpegProc{Cmd: cmd, done: done}
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, body
}

// resolve returns ref relative to base.
func resolve(base, ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "/") {
		if strings.HasPrefix(ref, "/") {
			i := strings.Index(base[len("http://"):], "/")
			return base[:len("http://")+i] + ref
		}
		return ref
	}
	base = base[:strings.LastIndex(base, "/")+1]
	return base + ref
}

var attrRe = regexp.MustCompile(`([A-Z0-9-]+)=("[^"]*"|[^,]*)`)

func attrs(line string) map[string]string {
	m := map[string]string{}
	if i := strings.Index(line, ":"); i >= 0 {
		line = line[i+1:]
	}
	for _, kv := range attrRe.FindAllStringSubmatch(line, -1) {
		m[kv[1]] = strings.Trim(kv[2], `"`)
	}
	return m
}

// mediaPlaylist is the part of a media playlist the tests check.
type mediaPlaylist struct {
	raw          string
	targetDur    float64
	partTarget   float64
	canBlock     bool
	partHoldBack float64
	msn          int // EXT-X-MEDIA-SEQUENCE
	segments     []string
	segDurations []float64
	parts        int
	lastPartMSN  int // MSN of the segment holding the last EXT-X-PART
	lastPartIdx  int
	preload      bool
	pdt          bool
	mapURI       string
	endlist      bool
}

func parseMedia(t *testing.T, body []byte) *mediaPlaylist {
	t.Helper()
	p := &mediaPlaylist{raw: string(body), lastPartMSN: -1}
	sc := bufio.NewScanner(bytes.NewReader(body))
	seg := 0
	partIdx := 0
	var dur float64
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			p.targetDur, _ = strconv.ParseFloat(l[len("#EXT-X-TARGETDURATION:"):], 64)
		case strings.HasPrefix(l, "#EXT-X-PART-INF:"):
			p.partTarget, _ = strconv.ParseFloat(attrs(l)["PART-TARGET"], 64)
		case strings.HasPrefix(l, "#EXT-X-SERVER-CONTROL:"):
			a := attrs(l)
			p.canBlock = a["CAN-BLOCK-RELOAD"] == "YES"
			p.partHoldBack, _ = strconv.ParseFloat(a["PART-HOLD-BACK"], 64)
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			p.msn, _ = strconv.Atoi(l[len("#EXT-X-MEDIA-SEQUENCE:"):])
			seg = p.msn
		case strings.HasPrefix(l, "#EXT-X-MAP:"):
			p.mapURI = attrs(l)["URI"]
		case strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"):
			p.pdt = true
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			p.parts++
			p.lastPartMSN, p.lastPartIdx = seg, partIdx
			partIdx++
		case strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT:"):
			p.preload = true
		case strings.HasPrefix(l, "#EXTINF:"):
			v := strings.TrimSuffix(l[len("#EXTINF:"):], ",")
			if i := strings.Index(v, ","); i >= 0 {
				v = v[:i]
			}
			dur, _ = strconv.ParseFloat(v, 64)
		case strings.HasPrefix(l, "#EXT-X-ENDLIST"):
			p.endlist = true
		case l != "" && !strings.HasPrefix(l, "#"):
			p.segments = append(p.segments, l)
			p.segDurations = append(p.segDurations, dur)
			seg++
			partIdx = 0
		}
	}
	return p
}

// firstVariant fetches the multivariant playlist and returns the URL of its
// first media playlist.
func firstVariant(t *testing.T, url string) (string, string) {
	t.Helper()
	code, hdr, body := get(t, url)
	if code != 200 {
		t.Fatalf("multivariant %s: %d %s", url, code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.Contains(ct, "mpegurl") {
		t.Errorf("multivariant Content-Type %q", ct)
	}
	lines := strings.Split(string(body), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "#EXT-X-STREAM-INF:") && i+1 < len(lines) {
			return resolve(url, strings.TrimSpace(lines[i+1])), string(body)
		}
	}
	t.Fatalf("no variant in multivariant playlist:\n%s", body)
	return "", ""
}

func ffprobe(t *testing.T, path string) map[string]any {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRTMPToLLHLS(t *testing.T) {
	s := startServer(t, "all")
	launched := time.Now()
	ff := pushRTMP(t, s.rtmpURL("demo"))
	mv := s.httpURL("/hls/demo/index.m3u8")

	var mediaURL string
	waitUntil(t, 60*time.Second, "the multivariant playlist exists", func() bool {
		resp, err := http.Get(mv)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	mediaURL, _ = firstVariant(t, mv)
	var pl *mediaPlaylist
	waitUntil(t, 60*time.Second, "the media playlist has parts", func() bool {
		code, _, body := get(t, mediaURL)
		if code != 200 {
			return false
		}
		pl = parseMedia(t, body)
		return pl.parts > 0
	})
	t.Logf("ffmpeg launch -> first media playlist with parts: %v", time.Since(launched).Round(time.Millisecond))

	// LL-HLS tags.
	if pl.partTarget <= 0 || pl.partTarget > 0.5 {
		t.Errorf("PART-TARGET %v", pl.partTarget)
	}
	if !pl.canBlock {
		t.Error("SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES")
	}
	if pl.partHoldBack+1e-6 < 3*pl.partTarget {
		t.Errorf("PART-HOLD-BACK %v < 3 x PART-TARGET %v", pl.partHoldBack, pl.partTarget)
	}
	if !pl.preload {
		t.Error("no EXT-X-PRELOAD-HINT")
	}
	if pl.mapURI == "" {
		t.Error("no EXT-X-MAP")
	}

	// A whole segment: decode init + segment with ffprobe.
	waitUntil(t, 60*time.Second, "a complete segment", func() bool {
		_, _, body := get(t, mediaURL)
		pl = parseMedia(t, body)
		return len(pl.segments) >= 1
	})
	if !pl.pdt {
		t.Error("no EXT-X-PROGRAM-DATE-TIME")
	}
	code, hdr, initSeg := get(t, resolve(mediaURL, pl.mapURI))
	if code != 200 {
		t.Fatalf("init: %d", code)
	}
	if !strings.Contains(hdr.Get("Cache-Control"), "max-age") {
		t.Errorf("init Cache-Control %q", hdr.Get("Cache-Control"))
	}
	code, hdr, seg := get(t, resolve(mediaURL, pl.segments[0]))
	if code != 200 {
		t.Fatalf("segment: %d", code)
	}
	if ct := hdr.Get("Content-Type"); ct != "video/mp4" {
		t.Errorf("segment Content-Type %q", ct)
	}
	if !strings.Contains(hdr.Get("Cache-Control"), "immutable") {
		t.Errorf("segment Cache-Control %q", hdr.Get("Cache-Control"))
	}
	if hdr.Get("Access-Control-Allow-Origin") == "" {
		t.Error("segment lacks CORS header")
	}
	f := filepath.Join(t.TempDir(), "seg.mp4")
	os.WriteFile(f, append(initSeg, seg...), 0o644)
	probe := ffprobe(t, f)
	var haveVideo, haveAudio bool
	for _, st := range probe["streams"].([]any) {
		m := st.(map[string]any)
		switch m["codec_name"] {
		case "h264":
			haveVideo = true
			if m["width"].(float64) != 1280 || m["height"].(float64) != 720 {
				t.Errorf("video %vx%v, want 1280x720", m["width"], m["height"])
			}
		case "aac":
			haveAudio = true
		}
	}
	if !haveVideo || !haveAudio {
		t.Fatalf("segment streams: %v", probe["streams"])
	}
	dur, _ := strconv.ParseFloat(probe["format"].(map[string]any)["duration"].(string), 64)
	if d := pl.segDurations[0]; dur < d-0.15 || dur > d+0.15 || d < 0.9 || d > pl.targetDur+0.001 {
		t.Errorf("segment duration: ffprobe %.3f s, EXTINF %.3f s, target %v", dur, d, pl.targetDur)
	}

	// Playlists are not cached; CORS preflight works.
	_, hdr, _ = get(t, mediaURL)
	if cc := hdr.Get("Cache-Control"); !strings.Contains(cc, "no-cache") && !strings.Contains(cc, "no-store") {
		t.Errorf("playlist Cache-Control %q", cc)
	}
	req, _ := http.NewRequest(http.MethodOptions, mediaURL, nil)
	req.Header.Set("Origin", "http://example.test")
	req.Header.Set("Access-Control-Request-Method", "GET")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("CORS preflight: %v %v", err, resp)
	}

	// Blocking reload: ask for the part after the newest one; the answer
	// must only come once it exists.
	_, _, body := get(t, mediaURL)
	pl = parseMedia(t, body)
	wantMSN, wantPart := pl.lastPartMSN, pl.lastPartIdx+1
	asked := time.Now()
	code, _, body = get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", mediaURL, wantMSN, wantPart))
	waited := time.Since(asked)
	if code != 200 {
		t.Fatalf("blocking reload: %d %s", code, body)
	}
	got := parseMedia(t, body)
	if got.lastPartMSN < wantMSN || (got.lastPartMSN == wantMSN && got.lastPartIdx < wantPart) {
		t.Fatalf("blocking reload for msn %d part %d answered with newest part %d.%d", wantMSN, wantPart, got.lastPartMSN, got.lastPartIdx)
	}
	t.Logf("blocking reload for the next part answered after %v", waited.Round(time.Millisecond))
	if code, _, _ := get(t, mediaURL+"?_HLS_part=1"); code != 400 {
		t.Errorf("_HLS_part without _HLS_msn: %d, want 400", code)
	}

	// The publisher disconnects: the playlist ends.
	ff.Process.Kill()
	waitUntil(t, 60*time.Second, "the playlist ends with EXT-X-ENDLIST", func() bool {
		_, _, body := get(t, mediaURL)
		return parseMedia(t, body).endlist
	})

	if err := s.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestSIGTERMEndsLiveStreams(t *testing.T) {
	s := startServer(t, "all")
	pushRTMP(t, s.rtmpURL("live1"))
	mv := s.httpURL("/hls/live1/index.m3u8")
	waitUntil(t, 60*time.Second, "the stream is live", func() bool {
		resp, err := http.Get(mv)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err := s.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM with a live publisher: %v\n%s", err, s.logs.String())
	}
	logs := s.logs.String()
	for _, want := range []string{"shutting down", "stream offline", "liveengine stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
}
