// Package roomtoken is the format of room join tokens: HS256 JWTs that the
// control plane mints and the SFU verifies with the shared
// webrtc.room_secret. It is a leaf package so the control plane can mint
// tokens without importing the SFU.
package roomtoken

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/liveengine/liveengine/engine"
)

// Room kinds.
const (
	// Live is a live show: hosts publish, and the room is also an engine
	// stream that plays over WHEP and HLS.
	Live = "live"
	// Call is a 1:1 or group call.
	Call = "call"
)

// ErrBadToken is returned for a join token that is not valid.
var ErrBadToken = errors.New("invalid join token")

// Claims are the claims of a join token.
type Claims struct {
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

// Check reports why c would be refused, or nil.
func (c *Claims) Check() error {
	if !engine.ValidKey(c.Room) {
		return fmt.Errorf("%w: room %q is not a valid name", ErrBadToken, c.Room)
	}
	if !engine.ValidKey(c.Identity) {
		return fmt.Errorf("%w: identity %q is not valid", ErrBadToken, c.Identity)
	}
	if c.Kind != Live && c.Kind != Call {
		return fmt.Errorf("%w: kind %q is neither %q nor %q", ErrBadToken, c.Kind, Live, Call)
	}
	if len(c.Name) > 128 {
		return fmt.Errorf("%w: name longer than 128 bytes", ErrBadToken)
	}
	return nil
}

// Sign mints a join token valid for ttl. It does not check the claims, so
// tests can mint tokens the SFU must refuse; call Check first.
func Sign(secret string, c Claims, ttl time.Duration) (string, error) {
	if secret == "" {
		return "", fmt.Errorf("%w: rooms are disabled (webrtc.room_secret is empty)", ErrBadToken)
	}
	now := time.Now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// Parse verifies a join token: HS256 only, signature, expiry (required)
// and the claims' shape.
func Parse(secret, token string) (*Claims, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: rooms are disabled (webrtc.room_secret is empty)", ErrBadToken)
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	return &c, nil
}
