package rtmp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	gortmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"

	"github.com/liveengine/liveengine/engine/enginetest"
)

// handshake performs the plain RTMP handshake as a client.
func handshake(t *testing.T, c net.Conn) {
	t.Helper()
	c0c1 := make([]byte, 1537)
	c0c1[0] = 3
	_, _ = rand.Read(c0c1[9:])
	if _, err := c.Write(c0c1); err != nil {
		t.Fatal(err)
	}
	s0s1s2 := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(c, s0s1s2); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, err := c.Write(s0s1s2[1 : 1+1536]); err != nil { // C2 echoes S1
		t.Fatal(err)
	}
}

// chunk encodes one type-0 chunk carrying a whole message (payload up to
// the default chunk size of 128 bytes).
func chunk(csid byte, typeID byte, streamID uint32, payload []byte) []byte {
	b := []byte{csid & 0x3f, 0, 0, 0}
	b = append(b, byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload)), typeID)
	b = binary.LittleEndian.AppendUint32(b, streamID)
	return append(b, payload...)
}

// expectClosed reads until the server closes the connection.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("server did not close the connection")
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMalformedConnectionsAreIsolated(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv, addr := startServer(t, eng)
	// A real publisher streams throughout.
	pub := push(t, "rtmp://"+addr+"/live/steady", clip720(t), true)
	s := waitStream(t, eng, "steady")
	waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })

	avcc := seed(t, "FuzzParseVideoTag", "avc-seqheader")

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"random bytes", func(t *testing.T) {
			c := dial(t, addr)
			junk := make([]byte, 8192)
			_, _ = rand.Read(junk)
			_, _ = c.Write(junk)
			expectClosed(t, c)
		}},
		{"broken AMF command", func(t *testing.T) {
			c := dial(t, addr)
			handshake(t, c)
			// "connect" then a number marker with 3 of its 8 bytes.
			body := append([]byte{0x02, 0, 7}, "connect"...)
			body = append(body, 0x00, 0x3f, 0xf0, 0x00)
			_, _ = c.Write(chunk(3, 20, 0, body))
			expectClosed(t, c)
		}},
		{"huge chunk size", func(t *testing.T) {
			c := dial(t, addr)
			handshake(t, c)
			_, _ = c.Write(chunk(2, 1, 0, []byte{0x7f, 0xff, 0xff, 0xff}))
			expectClosed(t, c)
		}},
		{"zero-length message (go-rtmp panics)", func(t *testing.T) {
			c := dial(t, addr)
			handshake(t, c)
			_, _ = c.Write(chunk(3, 20, 0, nil))
			expectClosed(t, c)
		}},
		{"oversized message before publish", func(t *testing.T) {
			c := dial(t, addr)
			handshake(t, c)
			_, _ = c.Write(chunk(2, 1, 0, []byte{0, 1, 0, 0})) // chunk size 65536
			// A 16 MiB command message, sent until the server hangs up.
			hdr := chunk(3, 20, 0, nil)
			hdr[4], hdr[5], hdr[6] = 0xff, 0xff, 0xff
			_, _ = c.Write(hdr)
			go func() {
				part := make([]byte, 65536)
				for i := 0; i < 256; i++ {
					if _, err := c.Write(part); err != nil {
						return
					}
					if _, err := c.Write([]byte{0xc3}); err != nil {
						return
					}
				}
			}()
			expectClosed(t, c)
		}},
		{"truncated video tag", func(t *testing.T) {
			cc, err := gortmp.Dial("rtmp", addr, &gortmp.ConnConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			if err := cc.Connect(&message.NetConnectionConnect{Command: message.NetConnectionConnectCommand{App: "live"}}); err != nil {
				t.Fatal(err)
			}
			st, err := cc.CreateStream(nil, 128)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Publish(&message.NetStreamPublish{PublishingName: "broken", PublishingType: "live"}); err != nil {
				t.Fatal(err)
			}
			_ = st.Write(4, 0, &message.VideoMessage{Payload: bytes.NewReader(avcc)})
			// A NAL unit length of 9 with one byte after it.
			_ = st.Write(4, 33, &message.VideoMessage{Payload: bytes.NewReader([]byte{0x27, 0x01, 0, 0, 0, 0, 0, 0, 9, 0x41})})
			waitFor(t, "malformed publisher disconnected", func() bool {
				return metricValue(t, srv, "liveengine_rtmp_connections", nil) == 1
			})
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			want := float64(i + 1)
			waitFor(t, "malformed counted", func() bool {
				return metricValue(t, srv, "liveengine_rtmp_malformed_closed_total", nil) >= want
			})
			if got := metricValue(t, srv, "liveengine_rtmp_malformed_closed_total", nil); got != want {
				t.Fatalf("malformed = %v, want %v", got, want)
			}
		})
	}

	// The real publisher never noticed.
	cur, err := eng.Stream("steady")
	if err != nil || cur != s {
		t.Fatalf("steady stream replaced or gone: %v", err)
	}
	frames := s.FramesIn()
	waitFor(t, "steady publisher still streaming", func() bool { return s.FramesIn() > frames+15 })
	select {
	case <-pub.done:
		t.Fatalf("steady publisher exited: %v\n%s", pub.err, pub.stderr.String())
	default:
	}
	if _, err := eng.Stream("broken"); err == nil {
		t.Fatal("the malformed publisher's stream is still live")
	}
}

func TestReadTimeoutClosesIdleConnection(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.ReadTimeout = time.Second
	srv, err := New(conf, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c := dial(t, srv.Addr().String())
	handshake(t, c)
	expectClosed(t, c) // nothing more is sent: the server gives up
	waitFor(t, "connection released", func() bool {
		return metricValue(t, srv, "liveengine_rtmp_connections", nil) == 0
	})
	if v := metricValue(t, srv, "liveengine_rtmp_malformed_closed_total", nil); v != 0 {
		t.Fatalf("an idle connection counted as malformed: %v", v)
	}
}
