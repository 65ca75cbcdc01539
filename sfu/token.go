package sfu

import (
	"time"

	"github.com/liveengine/liveengine/sfu/roomtoken"
)

// Room kinds.
const (
	// RoomLive is a live show: hosts publish, the room is also an engine
	// stream "room-NAME" that plays over WHEP and HLS.
	RoomLive = roomtoken.Live
	// RoomCall is a 1:1 or group call.
	RoomCall = roomtoken.Call
)

// ErrBadToken is returned for a join token that is not valid.
var ErrBadToken = roomtoken.ErrBadToken

// JoinClaims are the claims of a room join token, an HS256 JWT minted by the
// control plane (POST /api/v1/rooms/{name}/token) with the shared
// webrtc.room_secret; the format lives in package roomtoken.
type JoinClaims = roomtoken.Claims

// SignJoinToken mints a join token valid for ttl.
func SignJoinToken(secret string, c JoinClaims, ttl time.Duration) (string, error) {
	return roomtoken.Sign(secret, c, ttl)
}

// ParseJoinToken verifies a join token.
func ParseJoinToken(secret, token string) (*JoinClaims, error) {
	return roomtoken.Parse(secret, token)
}
