package sfu

import (
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A participant that stops a track (a screen share ends) and renegotiates
// has it unpublished for the others.
func TestRoomTrackRemovedByRenegotiation(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := testConfig()
	_, base := newTestSFU(t, eng, conf)
	a := joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "r2", Identity: "a", Kind: RoomCall, CanPublish: true})
	b := joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "r2", Identity: "b", Kind: RoomCall, CanPublish: true})

	screen, err := webrtc.NewTrackLocalStaticRTP(H264Capability, "screen-a", "s-a")
	if err != nil {
		t.Fatal(err)
	}
	a.pcMu.Lock()
	snd, err := a.pc.AddTrack(screen)
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := a.pc.CreateOffer(nil)
	_ = a.pc.SetLocalDescription(offer)
	a.pcMu.Unlock()
	a.send(Message{Type: MsgOffer, SDP: offer.SDP, Sources: map[string]string{"screen-a": SourceScreenShare}})
	stop := make(chan struct{})
	go func() {
		var seq uint16
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			seq++
			_ = screen.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3600, Marker: true}, Payload: []byte{0x65, 1}})
		}
	}()
	defer close(stop)
	waitFor(t, 30*time.Second, "b receiving the screen share", func() bool { return b.flowing(10) >= 1 })
	if !b.hasEvent(func(m Message) bool { return m.Type == MsgTrackPublished && m.Track.Source == SourceScreenShare }) {
		t.Fatal("no track_published with source screen_share")
	}

	a.pcMu.Lock()
	if err := a.pc.RemoveTrack(snd); err != nil {
		t.Fatal(err)
	}
	offer, _ = a.pc.CreateOffer(nil)
	_ = a.pc.SetLocalDescription(offer)
	a.pcMu.Unlock()
	a.send(Message{Type: MsgOffer, SDP: offer.SDP})
	waitFor(t, 30*time.Second, "track_unpublished at b", func() bool {
		return b.hasEvent(func(m Message) bool { return m.Type == MsgTrackUnpublished && m.Track.Source == SourceScreenShare })
	})
}
