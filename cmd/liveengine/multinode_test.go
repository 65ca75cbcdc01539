package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/liveengine/liveengine/internal/testsvc"
)

// api is a small JSON client of one control process.
type api struct {
	t     *testing.T
	base  string
	token string
}

func (a *api) do(method, path string, body any, out any) int {
	a.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

type streamInfo struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Viewers   int    `json:"viewers"`
	StreamKey string `json:"stream_key"`
	RTMPURL   string `json:"rtmp_url"`
	HLSURL    string `json:"hls_url"`
}

func (a *api) stream(id string) streamInfo {
	a.t.Helper()
	var st streamInfo
	if code := a.do("GET", "/api/v1/streams/"+id, nil, &st); code != 200 {
		a.t.Fatalf("GET stream %s: %d", id, code)
	}
	return st
}

func (a *api) liveIDs() []string {
	a.t.Helper()
	var out struct {
		Streams []streamInfo `json:"streams"`
	}
	a.do("GET", "/api/v1/discover/live", nil, &out)
	var ids []string
	for _, s := range out.Streams {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestEngineAndTwoControlsOverRedis runs the production shape on one
// machine: a real redis-server and PostgreSQL, one `liveengine engine` and
// two `liveengine control` processes that share nothing but Redis and the
// database. It checks the whole streamer journey, cross-process chat, key
// revocation kicking a live publisher, and that lifecycle events emitted
// while no control process runs are not lost.
func TestEngineAndTwoControlsOverRedis(t *testing.T) {
	redisURL := testsvc.Redis(t)
	pgURL := testsvc.Postgres(t)
	common := []string{
		"LIVEENGINE_BUS_URL=" + redisURL,
		"LIVEENGINE_CONTROL_DATABASE_URL=" + pgURL,
		"LIVEENGINE_CONTROL_JWT_SECRET=an-e2e-secret-that-is-long-enough-0123456789",
		"LIVEENGINE_ENGINE_STATS_INTERVAL=500ms",
		"LIVEENGINE_BUS_REDIS_PREFIX=e2e",
	}
	eng := startServer(t, "engine", append(common, "LIVEENGINE_PUBLISH_AUTH=keys")...)
	ctlEnv := append(common, fmt.Sprintf("LIVEENGINE_CONTROL_PUBLIC_RTMP_URL=rtmp://127.0.0.1:%d/live", eng.rtmpPort),
		fmt.Sprintf("LIVEENGINE_CONTROL_PUBLIC_HTTP_URL=http://127.0.0.1:%d", eng.httpPort))
	ctlA := startServer(t, "control", ctlEnv...)
	ctlB := startServer(t, "control", ctlEnv...)
	a := &api{t: t, base: ctlA.apiURL("")}
	b := &api{t: t, base: ctlB.apiURL("")}

	// Register a streamer on A and a viewer on B; tokens work on both.
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code := a.do("POST", "/api/v1/auth/register", map[string]string{"username": "ana", "email": "ana@example.com", "password": "correct horse battery", "role": "streamer"}, &tok); code/100 != 2 {
		t.Fatalf("register: %d", code)
	}
	a.do("POST", "/api/v1/auth/login", map[string]string{"login": "ana", "password": "correct horse battery"}, &tok)
	a.token = tok.AccessToken
	if code := b.do("POST", "/api/v1/auth/register", map[string]string{"username": "vic", "email": "vic@example.com", "password": "another good password"}, &tok); code/100 != 2 {
		t.Fatalf("register viewer: %d", code)
	}
	b.token = tok.AccessToken

	var st streamInfo
	if code := a.do("POST", "/api/v1/streams", map[string]any{"title": "multinode", "category": "test"}, &st); code/100 != 2 {
		t.Fatalf("create stream: %d", code)
	}
	if st.StreamKey == "" || strings.Contains(st.HLSURL, st.StreamKey) {
		t.Fatalf("create stream response: %+v", st)
	}

	// A WebSocket client on control B hears a comment posted through A.
	wsURL := strings.Replace(ctlB.apiURL("/api/v1/ws"), "http://", "ws://", 1) + "?access_token=" + b.token
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]string{"type": "subscribe", "ref": "1", "room": st.ID})
	readUntil(t, ws, func(m map[string]any) bool { return m["type"] == "ack" && m["ref"] == "1" })
	if code := a.do("POST", "/api/v1/streams/"+st.ID+"/comments", map[string]string{"body": "hello from A"}, nil); code/100 != 2 {
		t.Fatalf("comment: %d", code)
	}
	readUntil(t, ws, func(m map[string]any) bool {
		return m["type"] == "comment" && strings.Contains(fmt.Sprint(m["data"]), "hello from A")
	})

	// Push with the returned key: the stream goes live in discovery, and an
	// HLS player makes the viewer count move.
	ff := pushRTMP(t, st.RTMPURL)
	waitUntil(t, 60*time.Second, "the stream is live in discovery", func() bool {
		return strings.Contains(strings.Join(b.liveIDs(), ","), st.ID)
	})
	hls := fmt.Sprintf("http://127.0.0.1:%d/hls/%s/index.m3u8", eng.httpPort, st.ID)
	waitUntil(t, 60*time.Second, "an HLS player is counted as a viewer", func() bool {
		if mv, err := http.Get(hls); err == nil {
			mv.Body.Close()
			if mv.StatusCode == 200 {
				media, _ := firstVariant(t, hls)
				if r, err := http.Get(media); err == nil {
					r.Body.Close()
				}
			}
		}
		return a.stream(st.ID).Viewers > 0
	})

	// Revoking the key kicks the live publisher within seconds.
	if code := a.do("DELETE", "/api/v1/streams/"+st.ID+"/key", nil, nil); code/100 != 2 {
		t.Fatalf("revoke key: %d", code)
	}
	select {
	case <-ff.done:
	case <-time.After(60 * time.Second):
		t.Fatal("revoking the key did not disconnect the publisher")
	}
	waitUntil(t, 60*time.Second, "the stream is offline after the kick", func() bool {
		return !strings.Contains(strings.Join(a.liveIDs(), ","), st.ID)
	})

	// Events emitted while no control process runs are delivered when one
	// comes back: stop both controls, publish and stop a new stream, start
	// a control again.
	var st2 streamInfo
	if code := a.do("POST", "/api/v1/streams", map[string]any{"title": "while control is down"}, &st2); code/100 != 2 {
		t.Fatalf("create stream 2: %d", code)
	}
	if err := ctlA.stop(t); err != nil {
		t.Fatalf("control A exit: %v", err)
	}
	if err := ctlB.stop(t); err != nil {
		t.Fatalf("control B exit: %v", err)
	}
	ff2 := pushRTMP(t, st2.RTMPURL)
	waitUntil(t, 60*time.Second, "the engine publishes stream 2", func() bool {
		r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hls/%s/index.m3u8", eng.httpPort, st2.ID))
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	ctlC := startServer(t, "control", ctlEnv...)
	c := &api{t: t, base: ctlC.apiURL("")}
	waitUntil(t, 60*time.Second, "the restarted control sees stream 2 live", func() bool {
		return c.stream(st2.ID).Status == "live"
	})
	ff2.Process.Kill()
	waitUntil(t, 60*time.Second, "stream 2 goes offline", func() bool {
		return c.stream(st2.ID).Status != "live"
	})
	if err := eng.stop(t); err != nil {
		t.Fatalf("engine exit: %v", err)
	}
}

func readUntil(t *testing.T, ws *websocket.Conn, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws.SetReadDeadline(deadline)
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("websocket: %v", err)
		}
		if match(m) {
			return
		}
	}
}
