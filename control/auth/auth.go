// Package auth issues and checks the control plane's credentials: bcrypt
// password hashes and short-lived HS256 JWT access tokens. Refresh tokens
// are opaque and live in control/store (they must be revocable).
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// ErrTokenExpired is returned for a well-formed, correctly signed token whose
// lifetime is over: the client should refresh.
var ErrTokenExpired = errors.New("access token expired")

// ErrTokenInvalid is returned for a token that is malformed, forged (bad
// signature, wrong algorithm) or of the wrong kind.
var ErrTokenInvalid = errors.New("access token invalid")

// ErrPasswordTooLong is returned for passwords bcrypt would silently cut.
var ErrPasswordTooLong = errors.New("password longer than 72 bytes")

// ErrWrongPassword is returned when a password does not match its hash.
var ErrWrongPassword = errors.New("wrong password")

// Claims are what an access token asserts.
type Claims struct {
	// Role is the user's role when the token was issued.
	Role string `json:"role"`
	// SessionID ties the token to the refresh session it came from.
	SessionID string `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

// Tokens signs and verifies access tokens.
type Tokens struct {
	secret []byte
	ttl    time.Duration
	issuer string
	parser *jwt.Parser
}

// NewTokens returns a signer with an HMAC secret of at least 32 bytes.
func NewTokens(secret []byte, ttl time.Duration) (*Tokens, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("jwt secret: %d bytes, need at least 32", len(secret))
	}
	const issuer = "liveengine"
	return &Tokens{
		secret: secret,
		ttl:    ttl,
		issuer: issuer,
		// Pinning the method refuses "alg: none" and RSA/HMAC confusion.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)),
	}, nil
}

// TTL is the lifetime of issued tokens.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Issue signs an access token for a user.
func (t *Tokens) Issue(userID, role, sessionID string) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(t.ttl)
	c := Claims{Role: role, SessionID: sessionID, RegisteredClaims: jwt.RegisteredClaims{
		Subject: userID, Issuer: t.issuer, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token and returns its claims.
func (t *Tokens) Verify(token string) (Claims, error) {
	var c Claims
	_, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrTokenExpired
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	case c.Subject == "" || c.Role == "":
		return Claims{}, fmt.Errorf("%w: missing subject or role", ErrTokenInvalid)
	}
	return c, nil
}

// HashPassword hashes a password with bcrypt at cost (bcrypt.DefaultCost
// when 0).
func HashPassword(password string, cost int) (string, error) {
	if len(password) > 72 {
		return "", ErrPasswordTooLong
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword compares a password with its hash.
func CheckPassword(hash, password string) error {
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		return ErrWrongPassword
	}
	return nil
}
