package control

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/liveengine/liveengine/control/realtime"
)

// Config configures the control plane (YAML section "control").
type Config struct {
	// Addr is the listen address of the API and WebSocket server.
	Addr string `yaml:"addr"`
	// PublicRTMPURL is the RTMP ingest base handed to streamers; the stream
	// key is appended ("rtmp://HOST:1935/live" + "/KEY").
	PublicRTMPURL string `yaml:"public_rtmp_url"`
	// PublicHTTPURL is the engine's public HTTP base (HLS, WHIP, WHEP).
	PublicHTTPURL string `yaml:"public_http_url"`
	// Database selects the store.
	Database DatabaseConfig `yaml:"database"`
	// JWTSecret signs access tokens (at least 32 bytes). Empty means a
	// random secret per start: tokens do not survive a restart and several
	// control processes cannot share them, so production must set it
	// (LIVEENGINE_CONTROL_JWT_SECRET).
	JWTSecret string `yaml:"jwt_secret"`
	// AccessTTL is the lifetime of access tokens.
	AccessTTL time.Duration `yaml:"access_ttl"`
	// RefreshTTL is the lifetime of refresh sessions (renewed on each use).
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
	// PasswordCost is the bcrypt cost of password hashes.
	PasswordCost int `yaml:"password_cost"`
	// Admins lists usernames that are made admins when they register.
	Admins []string `yaml:"admins"`
	// Limits are the rate and size limits.
	Limits LimitsConfig `yaml:"limits"`
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// WS tunes the WebSocket hub.
	WS realtime.Config `yaml:"ws"`
	// RoomSecret signs room join tokens; it is webrtc.room_secret, copied
	// here by the binary so the control plane and the SFU share it.
	RoomSecret string `yaml:"-"`
	// RoomTokenTTL is the lifetime of room join tokens.
	RoomTokenTTL time.Duration `yaml:"room_token_ttl"`
	// TrustProxy takes the client address from the last X-Forwarded-For
	// entry, the one the proxy in front added (only behind one proxy that
	// sets or appends it).
	TrustProxy bool `yaml:"trust_proxy"`
}

// DatabaseConfig selects the database.
type DatabaseConfig struct {
	// URL is sqlite://PATH or postgres://...
	URL string `yaml:"url"`
}

// LimitsConfig holds the rate and size limits.
type LimitsConfig struct {
	// CommentLength is the longest comment in characters.
	CommentLength int `yaml:"comment_length"`
	// CommentsPerSecond is each user's sustained comment rate.
	CommentsPerSecond float64 `yaml:"comments_per_second"`
	// CommentBurst is how many comments a user may send at once.
	CommentBurst int `yaml:"comment_burst"`
	// AuthPerMinute is the register/login/refresh attempts per client IP
	// per minute.
	AuthPerMinute int `yaml:"auth_per_minute"`
	// CostlyPerMinute is each user's (or anonymous IP's) rate on costly
	// routes: stream creation, key rotation, search.
	CostlyPerMinute int `yaml:"costly_per_minute"`
}

// DefaultConfig returns the defaults a new user meets.
func DefaultConfig() Config {
	return Config{
		Addr:          ":8080",
		PublicRTMPURL: "rtmp://127.0.0.1:1935/live",
		PublicHTTPURL: "http://127.0.0.1:8888",
		RoomTokenTTL:  time.Hour,
		Database:      DatabaseConfig{URL: "sqlite://data/liveengine.db"},
		AccessTTL:     15 * time.Minute,
		RefreshTTL:    720 * time.Hour,
		PasswordCost:  10,
		Limits: LimitsConfig{
			CommentLength:     500,
			CommentsPerSecond: 2,
			CommentBurst:      5,
			AuthPerMinute:     20,
			CostlyPerMinute:   60,
		},
		MaxBodyBytes: 1 << 20,
		WS:           realtime.DefaultConfig(),
	}
}

// Validate checks the config; each error names its key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("control.addr: %q: %w", c.Addr, err)
	}
	if u, err := url.Parse(c.PublicRTMPURL); err != nil || (u.Scheme != "rtmp" && u.Scheme != "rtmps") || u.Host == "" {
		return fmt.Errorf("control.public_rtmp_url: %q is not an rtmp:// or rtmps:// URL", c.PublicRTMPURL)
	}
	if c.RoomTokenTTL <= 0 {
		return fmt.Errorf("control.room_token_ttl: must be positive, got %s", c.RoomTokenTTL)
	}
	if u, err := url.Parse(c.PublicHTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("control.public_http_url: %q is not an http:// or https:// URL", c.PublicHTTPURL)
	}
	if !strings.HasPrefix(c.Database.URL, "sqlite://") && !strings.HasPrefix(c.Database.URL, "postgres://") && !strings.HasPrefix(c.Database.URL, "postgresql://") {
		return fmt.Errorf("control.database.url: want sqlite://PATH or postgres://..., got %q", redactURL(c.Database.URL))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		return fmt.Errorf("control.jwt_secret: must be at least 32 bytes, got %d", len(c.JWTSecret))
	}
	switch {
	case c.AccessTTL < time.Minute:
		return fmt.Errorf("control.access_ttl: must be at least 1m, got %s", c.AccessTTL)
	case c.RefreshTTL < c.AccessTTL:
		return fmt.Errorf("control.refresh_ttl: must be at least access_ttl (%s), got %s", c.AccessTTL, c.RefreshTTL)
	case c.PasswordCost < 4 || c.PasswordCost > 16:
		// bcrypt takes up to 31, but each step doubles the time: 10 is
		// ~60 ms here, 16 ~4 s, 20 a minute per sign-in (a sign-in storm
		// would then hold every core).
		return fmt.Errorf("control.password_cost: must be 4..16, got %d", c.PasswordCost)
	case c.Limits.CommentLength < 1:
		return fmt.Errorf("control.limits.comment_length: must be at least 1, got %d", c.Limits.CommentLength)
	case c.Limits.CommentsPerSecond < 0.01:
		// Below one comment per 100 s the wait a refused comment is told
		// (1/rate) stops being a useful Retry-After (1e-300 overflowed it).
		return fmt.Errorf("control.limits.comments_per_second: must be at least 0.01, got %g", c.Limits.CommentsPerSecond)
	case c.Limits.CommentBurst < 1:
		return fmt.Errorf("control.limits.comment_burst: must be at least 1, got %d", c.Limits.CommentBurst)
	case c.Limits.AuthPerMinute < 1:
		return fmt.Errorf("control.limits.auth_per_minute: must be at least 1, got %d", c.Limits.AuthPerMinute)
	case c.Limits.CostlyPerMinute < 1:
		return fmt.Errorf("control.limits.costly_per_minute: must be at least 1, got %d", c.Limits.CostlyPerMinute)
	case c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<30:
		// The cap keeps fasthttp's limit (2 × max_body_bytes) from
		// overflowing to a negative value, which fasthttp reads as its 4 MB
		// default: a huge setting silently became a small one.
		return fmt.Errorf("control.max_body_bytes: must be 1024 to 1073741824, got %d", c.MaxBodyBytes)
	}
	if err := c.WS.Validate(); err != nil {
		return err
	}
	return nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}
