package main

import (
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
	a := &api{t: t, base: s.apiURL("")}
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if code := a.do("POST", "/api/v1/auth/register", map[string]string{"username": "callie", "email": "callie@example.com", "password": "password-callie"}, &tk); code != 201 {
		t.Fatalf("register: %d", code)
	}
	a.token = tk.AccessToken
	var rt struct {
		Token string `json:"token"`
	}
	if code := a.do("POST", "/api/v1/rooms/call-e2e/token", map[string]string{"kind": "call"}, &rt); code != 200 || rt.Token == "" {
		t.Fatalf("room token: %d %+v", code, rt)
	}

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
