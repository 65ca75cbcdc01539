package money

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/control"
	"github.com/liveengine/liveengine/control/ledger"
	"github.com/liveengine/liveengine/engine"
	"gopkg.in/yaml.v3"
)

func start(t *testing.T) (*control.Server, *Money, string) {
	conf := control.DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.JWTSecret = strings.Repeat("s", 32)
	conf.PasswordCost = 4
	conf.Database.URL = "sqlite://" + filepath.Join(t.TempDir(), "c.db")
	bus := engine.NewLocalBus()
	t.Cleanup(func() { bus.Close() })
	s, err := control.New(conf, bus, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Mount(s, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return s, m, "http://" + s.Addr()
}

func call(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestMountedMoneyRoutes(t *testing.T) {
	s, _, base := start(t)
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if st := call(t, "POST", base+"/api/v1/auth/register", "", map[string]string{"username": "alice", "email": "a@x.io", "password": "password1", "role": "streamer"}, &tk); st != 201 {
		t.Fatalf("register %d", st)
	}
	if st := call(t, "GET", base+"/api/v1/wallet", "", nil, nil); st != 401 {
		t.Fatalf("wallet without token: %d", st)
	}
	if st := call(t, "GET", base+"/api/v1/wallet", tk.AccessToken, nil, nil); st != 200 {
		t.Fatalf("wallet: %d", st)
	}
	var in struct{ ID string }
	if st := call(t, "POST", base+"/api/v1/streams", tk.AccessToken, map[string]string{"title": "t"}, &in); st != 201 {
		t.Fatalf("stream %d", st)
	}
	info, err := s.StreamInfo(context.Background(), in.ID)
	if err != nil || info.Live {
		t.Fatalf("info %+v %v", info, err)
	}
	// A gift event pushed by the ledger reaches the stream's room.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/api/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteJSON(map[string]string{"type": "subscribe", "room": in.ID, "ref": "s"})
	deadline := time.Now().Add(30 * time.Second)
	_ = ws.SetReadDeadline(deadline)
	type envelope struct {
		Type, Ref string
		Data      map[string]any
	}
	// readUntil reads messages until one matches.
	readUntil := func(match func(envelope) bool) envelope {
		t.Helper()
		for {
			var env envelope
			if err := ws.ReadJSON(&env); err != nil {
				t.Fatal(err)
			}
			if match(env) {
				return env
			}
		}
	}
	readUntil(func(e envelope) bool { return e.Ref == "s" })
	if err := (bridge{s}).PublishRoomEvent(context.Background(), in.ID, map[string]any{"type": "gift", "coins": 5}); err != nil {
		t.Fatal(err)
	}
	readUntil(func(e envelope) bool { return e.Type == "gift" })
	// The ledger's own event type takes the path without a JSON round trip.
	if err := (bridge{s}).PublishRoomEvent(context.Background(), in.ID, ledger.GiftEvent{Type: "gift", StreamID: in.ID, GiftID: "rose", Coins: 7}); err != nil {
		t.Fatal(err)
	}
	env := readUntil(func(e envelope) bool { return e.Type == "gift" && e.Data["gift_id"] == "rose" })
	if env.Data["coins"] != float64(7) || env.Data["stream_id"] != in.ID {
		t.Fatalf("gift event %+v", env.Data)
	}
	if _, _, err := (bridge{s}).StreamOwner(context.Background(), "missing"); !errors.Is(err, ledger.ErrStreamNotFound) {
		t.Fatalf("unknown stream: %v, want ledger.ErrStreamNotFound (404)", err)
	}
}

// TestOpenAPICoversMoneyRoutes keeps docs/openapi.yaml in step with the
// ledger's routes as mounted.
func TestOpenAPICoversMoneyRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	s, _, _ := start(t)
	for _, r := range s.Routes() {
		if _, ok := spec.Paths[r.Pattern][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is missing from docs/openapi.yaml", r.Method, r.Pattern)
		}
	}
}
