package control

import (
	"net/http"
	"strings"
	"testing"

	"github.com/liveengine/liveengine/sfu/roomtoken"
)

// The control plane mints room join tokens that verify with the shared
// secret and carry the caller, the kind and the host policy.
func TestRoomToken(t *testing.T) {
	conf := testConfig(t, "")
	conf.RoomSecret = "room-secret-room-secret"
	_, c := startServer(t, conf, newBus(t))
	viewer := c.register("vera", "viewer")
	streamer := c.register("stan", "streamer")

	type view struct {
		Token, Room, Kind, Identity, Name string
		SignalURL                         string `json:"signal_url"`
		RoomURL                           string `json:"room_url"`
		CanPublish                        bool   `json:"can_publish"`
	}
	mint := func(tk tokens, room string, body any) (view, *roomtoken.Claims) {
		t.Helper()
		var v view
		c.as(tk.AccessToken).must(http.StatusOK, "POST", "/api/v1/rooms/"+room+"/token", body, &v)
		claims, err := roomtoken.Parse(conf.RoomSecret, v.Token)
		if err != nil {
			t.Fatalf("minted token does not verify: %v", err)
		}
		if claims.Room != room || claims.Identity != tk.User.ID || claims.Kind != v.Kind || claims.CanPublish != v.CanPublish {
			t.Fatalf("claims %+v do not match the answer %+v", claims, v)
		}
		return v, claims
	}
	// An empty body is a call; everyone publishes in a call.
	v, cl := mint(viewer, "call-7f3a", nil)
	if cl.Kind != roomtoken.Call || !cl.CanPublish || cl.Name != "vera" {
		t.Fatalf("call token for a viewer: %+v", cl)
	}
	if !strings.HasPrefix(v.SignalURL, "ws://127.0.0.1:8888/rtc/ws") || !strings.Contains(v.RoomURL, "/webrtc/room.html?token=") {
		t.Fatalf("urls: %q %q", v.SignalURL, v.RoomURL)
	}
	// In a live room only streamers host.
	if _, cl := mint(viewer, "show1", map[string]string{"kind": "live"}); cl.CanPublish {
		t.Fatalf("a viewer got a host token: %+v", cl)
	}
	if _, cl := mint(streamer, "show1", map[string]string{"kind": "live"}); !cl.CanPublish {
		t.Fatalf("a streamer got no host token: %+v", cl)
	}

	for _, tc := range []struct {
		name, path string
		body       any
		token      string
		status     int
		code       string
	}{
		{"no auth", "/api/v1/rooms/r1/token", nil, "", 401, ""},
		{"bad kind", "/api/v1/rooms/r1/token", map[string]string{"kind": "party"}, viewer.AccessToken, 400, "invalid_request"},
		{"bad name", "/api/v1/rooms/a%20b/token", nil, viewer.AccessToken, 400, "invalid_request"},
		{"garbage json", "/api/v1/rooms/r1/token", "{kind:", viewer.AccessToken, 400, "invalid_request"},
		{"unknown field", "/api/v1/rooms/r1/token", map[string]string{"room": "x"}, viewer.AccessToken, 400, "invalid_request"},
	} {
		r := c.as(tc.token).do("POST", tc.path, tc.body)
		if r.status != tc.status || (tc.code != "" && r.code() != tc.code) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}

	// Without a secret, rooms are off and the answer says how to turn them on.
	conf2 := testConfig(t, "")
	_, c2 := startServer(t, conf2, newBus(t))
	tk := c2.register("olga", "viewer")
	r := c2.as(tk.AccessToken).do("POST", "/api/v1/rooms/r1/token", nil)
	if r.status != http.StatusServiceUnavailable || r.code() != "rooms_disabled" || !strings.Contains(string(r.body), "room_secret") {
		t.Fatalf("no secret: %d %s", r.status, r.body)
	}
}
