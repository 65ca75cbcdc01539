package sfu

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		key    string
		change func(*Config)
	}{
		{"webrtc.ice_udp_port", func(c *Config) { c.ICEUDPPort = 70000 }},
		{"webrtc.ice_tcp_port", func(c *Config) { c.ICETCPPort = -2 }},
		{"webrtc.ice_host", func(c *Config) { c.ICEHost = "localhost" }},
		{"webrtc.public_ips", func(c *Config) { c.PublicIPs = []string{"1.2.3"} }},
		{"webrtc.stun_servers", func(c *Config) { c.STUNServers = []string{"stun.example.org"} }},
		{"webrtc.turn_servers", func(c *Config) { c.TURNServers = []TURNServer{{URL: "http://x"}} }},
		{"webrtc.turn.public_ip", func(c *Config) { c.TURN.Enabled = true }},
		{"webrtc.max_call_participants", func(c *Config) { c.MaxCallParticipants = 1 }},
		{"webrtc.max_sdp_bytes", func(c *Config) { c.MaxSDPBytes = 10 }},
		{"webrtc.session_timeout", func(c *Config) { c.SessionTimeout = 0 }},
		{"webrtc.initial_bitrate", func(c *Config) { c.InitialBitrate = 5 }},
	} {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key) {
			t.Errorf("%s: got %v, want an error naming the key", tc.key, err)
		}
	}
}

// The embedded TURN server starts and is handed to peers.
func TestEmbeddedTURN(t *testing.T) {
	c := testConfig()
	c.TURN = EmbeddedTURN{Enabled: true, Addr: "127.0.0.1:0", PublicIP: "127.0.0.1", Realm: "liveengine", Username: "u", Password: "p"}
	tr, err := NewTransport(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	servers := tr.ICEServers()
	if len(servers) != 1 || !strings.HasPrefix(servers[0].URLs[0], "turn:127.0.0.1:") || servers[0].Username != "u" {
		t.Fatalf("ICE servers %+v", servers)
	}
}
