package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp/codecs"
)

func FuzzSplitAVC(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 1, 0x68})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 9, 1})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		nalus, err := splitAVC(nil, b)
		if err != nil {
			return
		}
		// What splits must join back to the input.
		var out []byte
		for _, n := range nalus {
			if len(n) == 0 {
				t.Fatal("empty NAL unit")
			}
			out = binary.BigEndian.AppendUint32(out, uint32(len(n)))
			out = append(out, n...)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("split does not round-trip")
		}
	})
}

// FuzzPacketizeH264 checks that whatever access unit is packetized, pion's
// depacketizer gives the same NAL units back (AUDs dropped).
func FuzzPacketizeH264(f *testing.F) {
	f.Add([]byte{0x65, 1, 2, 3}, []byte{0x41, 9}, 1200)
	f.Add(bytes.Repeat([]byte{0x65}, 5000), []byte{0x09, 0x10}, 100)
	f.Add([]byte{0x67, 0x42}, []byte{0x68}, 3)
	f.Fuzz(func(t *testing.T, a, b []byte, m int) {
		if m < 3 || m > 1500 {
			return
		}
		var nalus [][]byte
		for _, n := range [][]byte{a, b} {
			if len(n) > 0 && n[0]&0x1f != 0 && n[0]&0x1f < 24 && n[0]&0x80 == 0 {
				nalus = append(nalus, n)
			}
		}
		pl, _ := packetizeH264(nil, make([]byte, 0, fuaSize(nalus, m)), nalus, nil, nil, m)
		d := &codecs.H264Packet{IsAVC: true}
		var got []byte
		for _, p := range pl {
			if len(p.data) > m {
				t.Fatalf("payload of %d bytes over the MTU %d", len(p.data), m)
			}
			out, err := d.Unmarshal(p.data)
			if err != nil {
				t.Fatalf("depacketize: %v", err)
			}
			got = append(got, out...)
		}
		var want []byte
		for _, n := range nalus {
			if n[0]&0x1f == naluAUD {
				continue
			}
			want = binary.BigEndian.AppendUint32(want, uint32(len(n)))
			want = append(want, n...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip differs: got %d bytes, want %d", len(got), len(want))
		}
		if len(pl) > 0 && !pl[len(pl)-1].marker {
			t.Fatal("last packet has no marker")
		}
	})
}

func FuzzParseTrickleFragment(f *testing.F) {
	f.Add([]byte("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n"))
	f.Add([]byte("a=candidate:1 1 udp 1 1.2.3.4 5 typ host\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte("a=candidate:short\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cands, _, err := ParseTrickleFragment(b)
		if err != nil {
			return
		}
		for _, c := range cands {
			if c.SDPMLineIndex == nil {
				t.Fatal("candidate without m-line index")
			}
		}
	})
}

func FuzzParseOffer(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"))
	f.Add([]byte("v=0\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, v, a, err := ParseOffer(b)
		if err == nil && !v && !a {
			t.Fatal("an accepted offer has no media")
		}
	})
}

func FuzzParseClientMessage(f *testing.F) {
	f.Add([]byte(`{"type":"join","token":"x.y.z"}`))
	f.Add([]byte(`{"type":"offer","sdp":"v=0","sources":{"t1":"screen_share"}}`))
	f.Add([]byte(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0"}}`))
	f.Add([]byte(`{"type":"mute","track_id":"a","muted":true}`))
	f.Add([]byte(`{"type":"leave"}`))
	f.Add([]byte(`{"type":"offer","sdp":"v=0","sources":{"t1":"webcam"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseClientMessage(b)
		if err != nil {
			return
		}
		switch m.Type {
		case MsgJoin:
			if m.Token == "" {
				t.Fatal("join without token accepted")
			}
		case MsgMute:
			if m.Muted == nil {
				t.Fatal("mute without muted accepted")
			}
		case MsgCandidate:
			if m.Candidate == nil {
				t.Fatal("candidate without candidate accepted")
			}
		}
	})
}

func FuzzParseJoinToken(f *testing.F) {
	const secret = "fuzz-secret"
	good, _ := SignJoinToken(secret, JoinClaims{Room: "r", Identity: "i", Kind: RoomCall}, 3600e9)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJyb29tIjoiciJ9.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseJoinToken(secret, tok)
		if err != nil {
			return
		}
		if c.Kind != RoomCall && c.Kind != RoomLive {
			t.Fatalf("accepted kind %q", c.Kind)
		}
	})
}
