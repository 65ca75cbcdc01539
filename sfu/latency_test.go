package sfu

import (
	"encoding/binary"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// BenchmarkRoomLatency measures the latency the SFU adds between a room
// publisher's RTP send and a subscriber's receive, on loopback. Each packet
// carries its send time; the subscriber records the difference. Reported
// as p50-µs and p99-µs.
//
//	go test ./sfu -run '^$' -bench BenchmarkRoomLatency -benchtime 1000x
func BenchmarkRoomLatency(b *testing.B) {
	eng := enginetest.NewEngine(b)
	conf := testConfig()
	_, base := newTestSFU(b, eng, conf)
	pubc := joinRoom(b, base, conf.RoomSecret, JoinClaims{Room: "lat", Identity: "pub", Kind: RoomCall, CanPublish: true})
	sub := joinRoom(b, base, conf.RoomSecret, JoinClaims{Room: "lat", Identity: "sub", Kind: RoomCall})

	var mu sync.Mutex
	var lat []time.Duration
	got := make(chan struct{}, 1)
	sub.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			now := time.Now().UnixNano()
			if p.Unmarshal(buf[:n]) != nil || len(p.Payload) < 9 {
				continue
			}
			sent := int64(binary.BigEndian.Uint64(p.Payload[1:]))
			mu.Lock()
			lat = append(lat, time.Duration(now-sent))
			mu.Unlock()
			select {
			case got <- struct{}{}:
			default:
			}
		}
	})
	audio, err := webrtc.NewTrackLocalStaticRTP(OpusCapability, "mic", "pub")
	if err != nil {
		b.Fatal(err)
	}
	pubc.pcMu.Lock()
	if _, err := pubc.pc.AddTransceiverFromTrack(audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		b.Fatal(err)
	}
	offer, err := pubc.pc.CreateOffer(nil)
	if err == nil {
		err = pubc.pc.SetLocalDescription(offer)
	}
	pubc.pcMu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	pubc.send(Message{Type: MsgOffer, SDP: offer.SDP})
	payload := make([]byte, 160)
	var seq uint16
	send := func() {
		seq++
		payload[0] = 0xfc
		binary.BigEndian.PutUint64(payload[1:], uint64(time.Now().UnixNano()))
		_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: payload})
	}
	// Wait until packets flow, then measure at 50 packets/s.
	deadline := time.Now().Add(60 * time.Second)
	for {
		send()
		select {
		case <-got:
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				b.Fatal("no packet reached the subscriber")
			}
			continue
		}
		break
	}
	mu.Lock()
	lat = lat[:0]
	mu.Unlock()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for b.Loop() {
		<-tick.C
		send()
	}
	time.Sleep(200 * time.Millisecond) // the last packets in flight
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no latency sample")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(lat)), "samples")
}
