package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// In `liveengine all` with no room secret configured, a join token minted by
// the control plane is accepted by the SFU's room signalling: the process
// shares one random secret between the two.
func TestControlMintedRoomTokenJoins(t *testing.T) {
	s := startServer(t, "all")
	post := func(path, token string, body any) (int, []byte) {
		t.Helper()
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", s.apiURL(path), bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	code, body := post("/api/v1/auth/register", "", map[string]string{"username": "callie", "email": "callie@example.com", "password": "password-callie"})
	if code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &tk)
	code, body = post("/api/v1/rooms/call-e2e/token", tk.AccessToken, map[string]string{"kind": "call"})
	if code != 200 {
		t.Fatalf("room token: %d %s", code, body)
	}
	var rt struct {
		Token string `json:"token"`
	}
	json.Unmarshal(body, &rt)

	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.httpURL("/rtc/ws"), "http", "ws", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "join", "token": rt.Token}); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	var m struct {
		Type, Room, Kind, Code, Message string
	}
	if err := ws.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "joined" || m.Room != "call-e2e" || m.Kind != "call" {
		t.Fatalf("join answer: %+v", m)
	}
}
