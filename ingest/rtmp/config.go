// Package rtmp ingests RTMP publishers (OBS, ffmpeg) into the engine:
// rtmp://HOST:1935/APP/STREAM_KEY carrying H.264 video and AAC audio in
// FLV tags becomes one engine stream.
package rtmp

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Config configures the RTMP server.
type Config struct {
	// Addr is the TCP address to listen on.
	Addr string `yaml:"addr"`
	// App is the application name publishers connect to, the first path
	// element of rtmp://HOST/APP/KEY.
	App string `yaml:"app"`
	// ReadTimeout closes a connection that sends nothing for this long.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// StartTimeout is how long to wait, after the publish command, for the
	// sequence headers of the announced tracks before going live with the
	// tracks whose configuration is known.
	StartTimeout time.Duration `yaml:"start_timeout"`
	// MaxChunkSize is the largest chunk size a peer may set; larger
	// requests close the connection.
	MaxChunkSize int `yaml:"max_chunk_size"`
}

// DefaultConfig returns the RTMP defaults.
func DefaultConfig() Config {
	return Config{
		Addr:         ":1935",
		App:          "live",
		ReadTimeout:  10 * time.Second,
		StartTimeout: 5 * time.Second,
		MaxChunkSize: 1 << 20,
	}
}

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("rtmp.addr: %q is not host:port: %w", c.Addr, err)
	}
	if c.App == "" || strings.ContainsAny(c.App, "/?# ") {
		return fmt.Errorf("rtmp.app: %q must be a non-empty name without '/', '?', '#' or spaces", c.App)
	}
	if c.ReadTimeout < time.Second {
		return fmt.Errorf("rtmp.read_timeout: %s is below 1s", c.ReadTimeout)
	}
	if c.StartTimeout <= 0 {
		return fmt.Errorf("rtmp.start_timeout: must be positive")
	}
	if c.MaxChunkSize < 128 || c.MaxChunkSize > 0xffffff {
		return fmt.Errorf("rtmp.max_chunk_size: %d is outside [128, 16777215]", c.MaxChunkSize)
	}
	return nil
}
