package sfu

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/liveengine/liveengine/engine"
)

// Room kinds.
const (
	// RoomLive is a live show: hosts publish, the room is also an engine
	// stream "room-NAME" that plays over WHEP and HLS.
	RoomLive = "live"
	// RoomCall is a 1:1 or group call.
	RoomCall = "call"
)

// ErrBadToken is returned for a join token that is not valid.
var ErrBadToken = errors.New("invalid join token")

// JoinClaims are the claims of a room join token, an HS256 JWT minted by the
// control plane with the shared webrtc.room_secret.
type JoinClaims struct {
	// Room is the room name.
	Room string `json:"room"`
	// Identity is the participant's unique id in the room (a user id).
	Identity string `json:"identity"`
	// Name is the display name.
	Name string `json:"name,omitempty"`
	// Kind is "live" or "call".
	Kind string `json:"kind"`
	// CanPublish lets the participant send tracks (hosts, callers).
	CanPublish bool `json:"can_publish"`
	jwt.RegisteredClaims
}

// SignJoinToken mints a join token valid for ttl; the control plane does the
// same with its own JWT library.
func SignJoinToken(secret string, c JoinClaims, ttl time.Duration) (string, error) {
	now := time.Now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// ParseJoinToken verifies a join token: HS256 only, signature, expiry
// (required) and the claims' shape.
func ParseJoinToken(secret, token string) (*JoinClaims, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: rooms are disabled (webrtc.room_secret is empty)", ErrBadToken)
	}
	var c JoinClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if !engine.ValidKey(c.Room) {
		return nil, fmt.Errorf("%w: room %q is not a valid name", ErrBadToken, c.Room)
	}
	if !engine.ValidKey(c.Identity) {
		return nil, fmt.Errorf("%w: identity %q is not valid", ErrBadToken, c.Identity)
	}
	if c.Kind != RoomLive && c.Kind != RoomCall {
		return nil, fmt.Errorf("%w: kind %q is neither %q nor %q", ErrBadToken, c.Kind, RoomLive, RoomCall)
	}
	if len(c.Name) > 128 {
		return nil, fmt.Errorf("%w: name longer than 128 bytes", ErrBadToken)
	}
	return &c, nil
}
