package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestMain(m *testing.M) {
	// The fan-out benchmark runs the server in a child process (this test
	// binary) so its memory is measured apart from the clients'.
	if os.Getenv(fanoutServerEnv) != "" {
		os.Exit(serveForBenchmark())
	}
	os.Exit(testsvc.Main(m))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t testing.TB, dbURL string) Config {
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.JWTSecret = "test-secret-test-secret-test-secret!"
	conf.PasswordCost = 4
	conf.Admins = []string{"root"}
	if dbURL == "" {
		dbURL = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
	}
	conf.Database.URL = dbURL
	return conf
}

// startServer runs a control server on a free loopback port.
func startServer(t testing.TB, conf Config, bus engine.Bus) (*Server, *client) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := New(conf, bus, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, &client{t: t, base: "http://" + s.Addr(), ws: "ws://" + s.Addr() + "/api/v1/ws"}
}

func newBus(t testing.TB) engine.Bus {
	b := engine.NewLocalBus()
	t.Cleanup(func() { b.Close() })
	return b
}

// client speaks JSON to a control server over real HTTP.
type client struct {
	t     testing.TB
	base  string
	ws    string
	token string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) code() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (c *client) as(token string) *client {
	cc := *c
	cc.token = token
	return &cc
}

func (c *client) do(method, path string, body any) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must does a request and fails the test unless the status matches.
func (c *client) must(status int, method, path string, body any, out any) response {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	if out != nil {
		r.decode(c.t, out)
	}
	return r
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	User         struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	} `json:"user"`
}

func (c *client) register(name, role string) tokens {
	c.t.Helper()
	var tk tokens
	c.must(201, "POST", "/api/v1/auth/register", map[string]string{
		"username": name, "email": name + "@example.com", "password": "password-" + name, "role": role}, &tk)
	return tk
}

type ingest struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Viewers   int    `json:"viewers"`
	StreamKey string `json:"stream_key"`
	RTMPURL   string `json:"rtmp_url"`
	WHIPURL   string `json:"whip_url"`
	HLSURL    string `json:"hls_url"`
	WHEPURL   string `json:"whep_url"`
}

func (c *client) createStream(title string) ingest {
	c.t.Helper()
	var in ingest
	c.must(201, "POST", "/api/v1/streams", map[string]any{"title": title, "category": "games", "tags": []string{"test"}}, &in)
	return in
}

// wsClient is a real WebSocket client.
type wsClient struct {
	t       testing.TB
	conn    *websocket.Conn
	backlog []envelope // messages read while waiting for a reply
}

func (c *client) dial(token string) *wsClient {
	c.t.Helper()
	u := c.ws
	if token != "" {
		u += "?access_token=" + token
	}
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		c.t.Fatalf("dial %s: %v (status %d)", u, err, st)
	}
	c.t.Cleanup(func() { conn.Close() })
	w := &wsClient{t: c.t, conn: conn}
	w.expect("welcome", "")
	return w
}

type envelope struct {
	Type  string          `json:"type"`
	Room  string          `json:"room"`
	Ref   string          `json:"ref"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (w *wsClient) send(m map[string]string) {
	w.t.Helper()
	if err := w.conn.WriteJSON(m); err != nil {
		w.t.Fatal(err)
	}
}

// expect reads until a message of type typ (and ref, if given) arrives,
// skipping others, within a generous deadline.
func (w *wsClient) expect(typ, ref string) envelope {
	w.t.Helper()
	for i, env := range w.backlog {
		if env.Type == typ && (ref == "" || env.Ref == ref) {
			w.backlog = append(w.backlog[:i], w.backlog[i+1:]...)
			return env
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = w.conn.SetReadDeadline(deadline)
		var env envelope
		if err := w.conn.ReadJSON(&env); err != nil {
			w.t.Fatalf("waiting for %q: %v", typ, err)
		}
		if env.Type == typ && (ref == "" || env.Ref == ref) {
			return env
		}
		if env.Type == "error" && ref != "" && env.Ref == ref {
			w.t.Fatalf("waiting for %q: error %+v", typ, env.Error)
		}
	}
}

// request sends a message with a ref and returns the ack or error reply.
func (w *wsClient) request(m map[string]string) envelope {
	w.t.Helper()
	ref := m["type"] + "-" + time.Now().Format("150405.000000000")
	m["ref"] = ref
	w.send(m)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = w.conn.SetReadDeadline(deadline)
		var env envelope
		if err := w.conn.ReadJSON(&env); err != nil {
			w.t.Fatalf("waiting for reply to %v: %v", m, err)
		}
		if env.Ref == ref {
			return env
		}
		w.backlog = append(w.backlog, env)
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var bg = context.Background()

func dialRaw(u string) (*websocket.Conn, *http.Response, error) {
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if conn != nil {
		conn.Close()
	}
	return conn, resp, err
}
