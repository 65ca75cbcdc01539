package control

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A display name may be 64 characters of up to 4 bytes, more than the 128
// bytes a room token's name holds; the cut must fall between characters,
// not leave a broken one (shown as U+FFFD) in the room.
func TestRoomTokenNameCutOnCharacter(t *testing.T) {
	conf := testConfig(t, "")
	conf.RoomSecret = "room-secret-room-secret"
	_, c := startServer(t, conf, newBus(t))
	tk := c.register("euro", "viewer")
	name := strings.Repeat("€", 60) // 180 bytes
	c.as(tk.AccessToken).must(200, "PATCH", "/api/v1/me", map[string]string{"display_name": name}, nil)
	var v struct{ Name string }
	c.as(tk.AccessToken).must(200, "POST", "/api/v1/rooms/call-x1/token", nil, &v)
	if !utf8.ValidString(v.Name) || strings.ContainsRune(v.Name, utf8.RuneError) || len(v.Name) > 128 || !strings.HasPrefix(name, v.Name) {
		t.Fatalf("room token name %q (%d bytes) is not a clean cut of %q", v.Name, len(v.Name), name)
	}
}
