package sfu

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// TURNServer is an external TURN server handed to peers.
type TURNServer struct {
	// URL is "turn:host:port" or "turns:host:port?transport=tcp".
	URL string `yaml:"url"`
	// Username and Credential authenticate against the server.
	Username   string `yaml:"username"`
	Credential string `yaml:"credential"`
}

// EmbeddedTURN configures the optional TURN server built into the engine,
// for calls between peers behind strict NATs.
type EmbeddedTURN struct {
	// Enabled starts the server.
	Enabled bool `yaml:"enabled"`
	// Addr is the UDP listen address of the TURN server.
	Addr string `yaml:"addr"`
	// PublicIP is the relay address announced to peers.
	PublicIP string `yaml:"public_ip"`
	// Realm, Username and Password are the long-term credentials.
	Realm    string `yaml:"realm"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Config configures the WebRTC transport, WHEP playback and rooms. It is the
// `webrtc:` section of the engine's YAML file.
type Config struct {
	// ICEUDPPort is the single UDP port every peer connection shares
	// (UDPMux). 0 picks a free port (tests).
	ICEUDPPort int `yaml:"ice_udp_port"`
	// ICETCPPort is the single TCP port for ICE-TCP (TCPMux), for clients
	// whose UDP is blocked. 0 picks a free port; -1 disables ICE-TCP.
	ICETCPPort int `yaml:"ice_tcp_port"`
	// ICEHost is the address the ICE sockets bind; empty binds every
	// interface.
	ICEHost string `yaml:"ice_host"`
	// PublicIPs replace the host candidates' addresses (NAT 1:1), for a
	// server behind a static NAT such as a cloud VM.
	PublicIPs []string `yaml:"public_ips"`
	// STUNServers are handed to the server's ICE agent and to peers, e.g.
	// "stun:stun.l.google.com:19302".
	STUNServers []string `yaml:"stun_servers"`
	// TURNServers are handed to peers.
	TURNServers []TURNServer `yaml:"turn_servers"`
	// TURN is the optional embedded TURN server.
	TURN EmbeddedTURN `yaml:"turn"`

	// RoomSecret is the HS256 secret of room join tokens (JWT), shared with
	// the control plane that mints them. Rooms are refused while empty.
	RoomSecret string `yaml:"room_secret"`
	// MaxCallParticipants bounds a room of kind "call".
	MaxCallParticipants int `yaml:"max_call_participants"`
	// MaxRoomParticipants bounds a room of kind "live" (hosts and guests).
	MaxRoomParticipants int `yaml:"max_room_participants"`
	// MaxSDPBytes bounds the body of WHIP/WHEP requests; larger bodies get
	// 413.
	MaxSDPBytes int `yaml:"max_sdp_bytes"`
	// SessionTimeout ends a WHEP session whose ICE never connects.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// ABR lets the server switch a WHEP viewer between renditions from the
	// congestion controller's bandwidth estimate.
	ABR bool `yaml:"abr"`
	// InitialBitrate is the congestion controller's starting estimate, in
	// bits/s.
	InitialBitrate int `yaml:"initial_bitrate"`
}

// DefaultConfig returns the defaults a new user meets.
func DefaultConfig() Config {
	return Config{
		ICEUDPPort:          8189,
		ICETCPPort:          8189,
		MaxCallParticipants: 8,
		MaxRoomParticipants: 16,
		MaxSDPBytes:         64 << 10,
		SessionTimeout:      30 * time.Second,
		ABR:                 true,
		InitialBitrate:      4_000_000,
		TURN: EmbeddedTURN{
			Addr:  ":3478",
			Realm: "liveengine",
		},
	}
}

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	if c.ICEUDPPort < 0 || c.ICEUDPPort > 65535 {
		return fmt.Errorf("webrtc.ice_udp_port: %d is not a port", c.ICEUDPPort)
	}
	if c.ICETCPPort < -1 || c.ICETCPPort > 65535 {
		return fmt.Errorf("webrtc.ice_tcp_port: %d is not a port (-1 disables ICE-TCP)", c.ICETCPPort)
	}
	if c.ICEHost != "" && net.ParseIP(c.ICEHost) == nil {
		return fmt.Errorf("webrtc.ice_host: %q is not an IP address", c.ICEHost)
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("webrtc.public_ips: %q is not an IP address", ip)
		}
	}
	for _, s := range c.STUNServers {
		if !strings.HasPrefix(s, "stun:") && !strings.HasPrefix(s, "stuns:") {
			return fmt.Errorf("webrtc.stun_servers: %q does not start with stun: or stuns:", s)
		}
	}
	for _, s := range c.TURNServers {
		if !strings.HasPrefix(s.URL, "turn:") && !strings.HasPrefix(s.URL, "turns:") {
			return fmt.Errorf("webrtc.turn_servers: %q does not start with turn: or turns:", s.URL)
		}
	}
	if c.TURN.Enabled {
		if _, _, err := net.SplitHostPort(c.TURN.Addr); err != nil {
			return fmt.Errorf("webrtc.turn.addr: %w", err)
		}
		if net.ParseIP(c.TURN.PublicIP) == nil {
			return fmt.Errorf("webrtc.turn.public_ip: %q is not an IP address", c.TURN.PublicIP)
		}
		if c.TURN.Username == "" || c.TURN.Password == "" {
			return fmt.Errorf("webrtc.turn.username/password: must be set when webrtc.turn.enabled")
		}
	}
	if c.MaxCallParticipants < 2 {
		return fmt.Errorf("webrtc.max_call_participants: %d is below 2", c.MaxCallParticipants)
	}
	if c.MaxRoomParticipants < 1 {
		return fmt.Errorf("webrtc.max_room_participants: %d is below 1", c.MaxRoomParticipants)
	}
	if c.MaxSDPBytes < 4096 {
		return fmt.Errorf("webrtc.max_sdp_bytes: %d is below 4096", c.MaxSDPBytes)
	}
	if c.SessionTimeout <= 0 {
		return fmt.Errorf("webrtc.session_timeout: must be positive")
	}
	if c.InitialBitrate < 100_000 {
		return fmt.Errorf("webrtc.initial_bitrate: %d is below 100000", c.InitialBitrate)
	}
	return nil
}
