package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/liveengine/liveengine/sfu"
)

// `liveengine room-token` mints what the SFU accepts, refuses what it would
// refuse, and says which key to set when rooms are disabled.
func TestRoomTokenCommand(t *testing.T) {
	const secret = "room-secret-for-the-test"
	run := func(env string, args ...string) (string, error) {
		cmd := exec.Command(binPath, append([]string{"room-token", "-config", ""}, args...)...)
		cmd.Env = append(cmd.Environ(), env)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("LIVEENGINE_WEBRTC_ROOM_SECRET="+secret, "-room", "r1", "-identity", "ana", "-name", "Ana")
	if err != nil {
		t.Fatalf("room-token: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c, err := sfu.ParseJoinToken(secret, lines[0])
	if err != nil {
		t.Fatalf("token refused: %v\n%s", err, out)
	}
	if c.Room != "r1" || c.Identity != "ana" || c.Name != "Ana" || c.Kind != sfu.RoomCall || !c.CanPublish {
		t.Fatalf("claims %+v", c)
	}
	if len(lines) < 2 || !strings.Contains(lines[1], "/webrtc/room.html?token=") {
		t.Fatalf("no page URL in %q", out)
	}
	if out, err := run("LIVEENGINE_WEBRTC_ROOM_SECRET=", "-room", "r1", "-identity", "ana"); err == nil || !strings.Contains(out, "webrtc.room_secret") {
		t.Fatalf("empty secret: err %v, %s", err, out)
	}
	if out, err := run("LIVEENGINE_WEBRTC_ROOM_SECRET="+secret, "-room", "no spaces", "-identity", "ana"); err == nil || !strings.Contains(out, "not a valid name") {
		t.Fatalf("bad room: err %v, %s", err, out)
	}
}
