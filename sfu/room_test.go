package sfu

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// roomClient is a pion participant speaking the signalling protocol. It is
// the impolite peer: a server offer that collides with its own is ignored
// (the server rolls back and offers again).
type roomClient struct {
	t        testing.TB
	identity string
	conn     *websocket.Conn
	wmu      sync.Mutex
	pc       *webrtc.PeerConnection
	pcMu     sync.Mutex // signalling operations
	pending  []webrtc.ICECandidateInit
	joined   Message

	mu      sync.Mutex
	events  []Message
	remote  map[string]*remoteCount // by track id
	local   []*webrtc.TrackLocalStaticRTP
	stopped chan struct{}
	wg      sync.WaitGroup
}

type remoteCount struct {
	track   *webrtc.TrackRemote
	packets atomic.Int64
}

func joinRoom(t testing.TB, base, secret string, claims JoinClaims) *roomClient {
	t.Helper()
	tok, err := SignJoinToken(secret, claims, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http://", "ws://", 1)+"/rtc/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &roomClient{t: t, identity: claims.Identity, conn: conn, remote: map[string]*remoteCount{}, stopped: make(chan struct{})}
	c.send(Message{Type: MsgJoin, Token: tok})
	_, b, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c.joined); err != nil || c.joined.Type != MsgJoined {
		t.Fatalf("join answer %s (%v)", b, err)
	}
	pc, err := newClientAPI(t, clientOptions{}).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c.pc = pc
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			ci := cand.ToJSON()
			c.send(Message{Type: MsgCandidate, Candidate: &ci})
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		rc := &remoteCount{track: tr}
		c.mu.Lock()
		c.remote[tr.ID()] = rc
		c.mu.Unlock()
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			rc.packets.Add(1)
		}
	})
	c.wg.Add(1)
	go c.readLoop()
	t.Cleanup(c.close)
	return c
}

func (c *roomClient) send(m Message) {
	b, _ := json.Marshal(m)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.WriteMessage(websocket.TextMessage, b)
}

func (c *roomClient) readLoop() {
	defer c.wg.Done()
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var m Message
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch m.Type {
		case MsgOffer:
			c.pcMu.Lock()
			if c.pc.SignalingState() == webrtc.SignalingStateStable {
				if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
					c.t.Logf("%s: server offer: %v", c.identity, err)
				} else if ans, err := c.pc.CreateAnswer(nil); err == nil {
					_ = c.pc.SetLocalDescription(ans)
					c.send(Message{Type: MsgAnswer, SDP: ans.SDP})
					c.flushLocked()
				}
			}
			c.pcMu.Unlock()
		case MsgAnswer:
			c.pcMu.Lock()
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
				c.t.Logf("%s: server answer: %v", c.identity, err)
			}
			c.flushLocked()
			c.pcMu.Unlock()
		case MsgCandidate:
			c.pcMu.Lock()
			if c.pc.RemoteDescription() == nil {
				c.pending = append(c.pending, *m.Candidate)
			} else {
				_ = c.pc.AddICECandidate(*m.Candidate)
			}
			c.pcMu.Unlock()
		default:
			c.mu.Lock()
			c.events = append(c.events, m)
			c.mu.Unlock()
		}
	}
}

func (c *roomClient) flushLocked() {
	for _, ci := range c.pending {
		_ = c.pc.AddICECandidate(ci)
	}
	c.pending = nil
}

// publish adds a camera and a microphone track, offers them and sends
// packets on them until the client closes.
func (c *roomClient) publish() {
	video, err := webrtc.NewTrackLocalStaticRTP(H264Capability, "cam-"+c.identity, "s-"+c.identity)
	if err != nil {
		c.t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(OpusCapability, "mic-"+c.identity, "s-"+c.identity)
	if err != nil {
		c.t.Fatal(err)
	}
	c.pcMu.Lock()
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		if _, err := c.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			c.t.Fatal(err)
		}
	}
	offer, err := c.pc.CreateOffer(nil)
	if err == nil {
		err = c.pc.SetLocalDescription(offer)
	}
	c.pcMu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(Message{Type: MsgOffer, SDP: offer.SDP, Sources: map[string]string{video.ID(): SourceCamera, audio.ID(): SourceMicrophone}})
	c.local = []*webrtc.TrackLocalStaticRTP{video, audio}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		for ts := uint32(0); ; ts += 960 {
			select {
			case <-c.stopped:
				return
			case <-tick.C:
			}
			seq++
			// A tiny IDR slice is enough: the SFU forwards, it does not decode.
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts * 2, Marker: true}, Payload: []byte{0x65, 0x88, 0x84, 0x00}})
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}, Payload: []byte{0xfc, 0xff, 0xfe}})
		}
	}()
}

func (c *roomClient) close() {
	select {
	case <-c.stopped:
		return
	default:
	}
	close(c.stopped)
	_ = c.conn.Close()
	_ = c.pc.Close()
	c.wg.Wait()
}

// flowing returns how many remote tracks of other participants have
// carried at least n packets.
func (c *roomClient) flowing(n int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, r := range c.remote {
		if r.packets.Load() >= n {
			k++
		}
	}
	return k
}

func (c *roomClient) hasEvent(match func(Message) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.events {
		if match(m) {
			return true
		}
	}
	return false
}

func TestRoomThreePeers(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := testConfig()
	x, base := newTestSFU(t, eng, conf)
	names := []string{"alice", "bob", "carol"}
	var clients []*roomClient
	for _, n := range names {
		c := joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "r1", Identity: n, Name: strings.ToUpper(n), Kind: RoomCall, CanPublish: true})
		c.publish()
		clients = append(clients, c)
	}
	waitFor(t, 60*time.Second, "each peer receiving the other two's audio and video", func() bool {
		for _, c := range clients {
			if c.flowing(20) < 4 {
				return false
			}
		}
		return true
	})
	for _, c := range clients {
		c.mu.Lock()
		for id, r := range c.remote {
			if r.track.StreamID() == c.identity {
				t.Errorf("%s receives its own track %s", c.identity, id)
			}
		}
		c.mu.Unlock()
	}
	// Everyone was told about every track with its source.
	waitFor(t, 20*time.Second, "track_published events with sources", func() bool {
		return clients[0].hasEvent(func(m Message) bool {
			return m.Type == MsgTrackPublished && m.Track.Participant == "carol" && m.Track.Source == SourceCamera
		}) && clients[0].hasEvent(func(m Message) bool {
			return m.Type == MsgTrackPublished && m.Track.Participant == "carol" && m.Track.Source == SourceMicrophone
		})
	})

	// Mute: carol mutes her microphone, the others are told.
	var carolMic string
	clients[0].mu.Lock()
	for _, m := range clients[0].events {
		if m.Type == MsgTrackPublished && m.Track.Participant == "carol" && m.Track.Kind == "audio" {
			carolMic = m.Track.ID
		}
	}
	clients[0].mu.Unlock()
	muted := true
	clients[2].send(Message{Type: MsgMute, TrackID: carolMic, Muted: &muted})
	waitFor(t, 20*time.Second, "track_muted", func() bool {
		return clients[1].hasEvent(func(m Message) bool { return m.Type == MsgTrackMuted && m.Track.ID == carolMic && m.Track.Muted })
	})

	// The bus command mutes bob.
	if err := engine.SendCommand(context.Background(), eng.Bus(), engine.Command{Kind: engine.CommandMute, StreamID: "r1", Participant: "bob"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "bob muted by command", func() bool {
		return clients[0].hasEvent(func(m Message) bool { return m.Type == MsgTrackMuted && m.Track.Participant == "bob" && m.Track.Muted })
	})

	// Carol leaves: the others are told, and her tracks are unpublished.
	clients[2].send(Message{Type: MsgLeave})
	for _, c := range clients[:2] {
		waitFor(t, 20*time.Second, c.identity+" told that carol left", func() bool {
			return c.hasEvent(func(m Message) bool { return m.Type == MsgParticipantLeft && m.Participant.Identity == "carol" }) &&
				c.hasEvent(func(m Message) bool { return m.Type == MsgTrackUnpublished && m.Track.Participant == "carol" })
		})
	}
	snap := x.Transport().Metrics().Snapshot()
	t.Logf("metrics: %+v", snap)
	waitFor(t, 20*time.Second, "two room peers left", func() bool { return x.Transport().Metrics().Snapshot().PeersRoom == 2 })
}

func TestRoomRefusals(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := testConfig()
	conf.MaxCallParticipants = 2
	_, base := newTestSFU(t, eng, conf)
	ws := strings.Replace(base, "http://", "ws://", 1) + "/rtc/ws"
	try := func(msg string) Message {
		conn, _, err := websocket.DefaultDialer.Dial(ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.WriteMessage(websocket.TextMessage, []byte(msg))
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m Message
		_ = json.Unmarshal(b, &m)
		return m
	}
	tok := func(secret string, c JoinClaims) string {
		s, err := SignJoinToken(secret, c, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := JoinClaims{Room: "c1", Identity: "a", Kind: RoomCall, CanPublish: true}
	for _, tc := range []struct{ name, msg, code string }{
		{"not json", "hello", "bad_message"},
		{"not join", `{"type":"leave"}`, "not_joined"},
		{"wrong secret", `{"type":"join","token":"` + tok("other-secret", good) + `"}`, "bad_token"},
		{"bad kind", `{"type":"join","token":"` + tok(conf.RoomSecret, JoinClaims{Room: "c1", Identity: "a", Kind: "party"}) + `"}`, "bad_token"},
	} {
		if m := try(tc.msg); m.Type != MsgError || m.Code != tc.code {
			t.Errorf("%s: got %+v, want error %s", tc.name, m, tc.code)
		}
	}
	// A call of two is full for a third.
	joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "c1", Identity: "a", Kind: RoomCall})
	joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "c1", Identity: "b", Kind: RoomCall})
	if m := try(`{"type":"join","token":"` + tok(conf.RoomSecret, JoinClaims{Room: "c1", Identity: "c", Kind: RoomCall}) + `"}`); m.Code != "room_full" {
		t.Errorf("third caller: %+v, want room_full", m)
	}
}

// Close disconnects participants and returns; it does not wait for them to
// leave on their own.
func TestCloseWithParticipants(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := testConfig()
	x, base := newTestSFU(t, eng, conf)
	a := joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "c", Identity: "a", Kind: RoomCall, CanPublish: true})
	a.publish()
	joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "c", Identity: "b", Kind: RoomCall})
	done := make(chan struct{})
	go func() { x.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Log(string(buf[:n]))
		t.Fatal("Close did not return with participants connected")
	}
}
