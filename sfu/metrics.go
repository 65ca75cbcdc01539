package sfu

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the SFU does. Every WebRTC component of the process
// (WHIP sessions, WHEP viewers, room participants) adds to the one
// instance owned by the Transport, exported as one Prometheus collector.
type Metrics struct {
	peersWHIP, peersWHEP, peersRoom atomic.Int64
	tracks                          atomic.Int64
	packetsOut, bytesOut            atomic.Uint64
	packetsIn, bytesIn              atomic.Uint64
	nacks, plis                     atomic.Uint64
	retransmits                     atomic.Uint64
	bwe                             atomic.Int64
	switches, switchesForced        atomic.Uint64
}

// Peer kinds for PeerOpened and PeerClosed.
const (
	PeerWHIP = "whip"
	PeerWHEP = "whep"
	PeerRoom = "room"
)

func (m *Metrics) peers(kind string) *atomic.Int64 {
	switch kind {
	case PeerWHIP:
		return &m.peersWHIP
	case PeerWHEP:
		return &m.peersWHEP
	}
	return &m.peersRoom
}

// PeerOpened counts a new peer connection of kind.
func (m *Metrics) PeerOpened(kind string) { m.peers(kind).Add(1) }

// PeerClosed counts a peer connection of kind gone.
func (m *Metrics) PeerClosed(kind string) { m.peers(kind).Add(-1) }

// Received counts packets read from publishers.
func (m *Metrics) Received(packets, bytes int) {
	m.packetsIn.Add(uint64(packets))
	m.bytesIn.Add(uint64(bytes))
}

// Feedback counts NACKed packets and PLIs/FIRs received from peers.
func (m *Metrics) Feedback(nacked, plis int) {
	m.nacks.Add(uint64(nacked))
	m.plis.Add(uint64(plis))
}

// Snapshot is a copy of the counters, for tests and logs.
type Snapshot struct {
	PeersWHIP, PeersWHEP, PeersRoom int64
	Tracks                          int64
	PacketsOut, BytesOut            uint64
	PacketsIn, BytesIn              uint64
	NACKs, PLIs                     uint64
	Retransmits                     uint64
	EstimatedBandwidth              int64
	// Switches counts WHEP rendition switches at a fresh keyframe;
	// ForcedSwitches those made after switchWait without one.
	Switches, ForcedSwitches uint64
}

// Snapshot returns the current counters.
func (m *Metrics) Snapshot() Snapshot {
	return Snapshot{
		PeersWHIP: m.peersWHIP.Load(), PeersWHEP: m.peersWHEP.Load(), PeersRoom: m.peersRoom.Load(),
		Tracks:     m.tracks.Load(),
		PacketsOut: m.packetsOut.Load(), BytesOut: m.bytesOut.Load(),
		PacketsIn: m.packetsIn.Load(), BytesIn: m.bytesIn.Load(),
		NACKs: m.nacks.Load(), PLIs: m.plis.Load(),
		Retransmits:        m.retransmits.Load(),
		EstimatedBandwidth: m.bwe.Load(),
		Switches:           m.switches.Load(), ForcedSwitches: m.switchesForced.Load(),
	}
}

var (
	descPeers   = prometheus.NewDesc("liveengine_webrtc_peers", "WebRTC peer connections open, by kind.", []string{"kind"}, nil)
	descTracks  = prometheus.NewDesc("liveengine_webrtc_tracks", "Media tracks forwarded by the SFU (WHEP viewer tracks and room subscriptions).", nil, nil)
	descPktOut  = prometheus.NewDesc("liveengine_webrtc_packets_out_total", "RTP packets sent to peers.", nil, nil)
	descByteOut = prometheus.NewDesc("liveengine_webrtc_bytes_out_total", "RTP payload bytes sent to peers.", nil, nil)
	descPktIn   = prometheus.NewDesc("liveengine_webrtc_packets_in_total", "RTP packets received from publishers.", nil, nil)
	descByteIn  = prometheus.NewDesc("liveengine_webrtc_bytes_in_total", "RTP payload bytes received from publishers.", nil, nil)
	descNACK    = prometheus.NewDesc("liveengine_webrtc_nacked_packets_total", "Packets peers asked again for with RTCP NACK.", nil, nil)
	descPLI     = prometheus.NewDesc("liveengine_webrtc_plis_total", "Keyframe requests (PLI/FIR) received from peers.", nil, nil)
	descRTX     = prometheus.NewDesc("liveengine_webrtc_retransmitted_packets_total", "Packets WHEP viewers asked again for that were resent from the history.", nil, nil)
	descBWE     = prometheus.NewDesc("liveengine_webrtc_estimated_bandwidth_bits", "Sum of the congestion controller's target bitrates over WHEP viewers.", nil, nil)
	descSwitch  = prometheus.NewDesc("liveengine_webrtc_rendition_switches_total", "WHEP viewers moved to another rendition: at a fresh keyframe (how=keyframe) or after waiting 5 s for one (how=forced).", []string{"how"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descTracks, descPktOut, descByteOut, descPktIn, descByteIn, descNACK, descPLI, descRTX, descBWE, descSwitch} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.Snapshot()
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(s.PeersWHIP), PeerWHIP)
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(s.PeersWHEP), PeerWHEP)
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(s.PeersRoom), PeerRoom)
	ch <- prometheus.MustNewConstMetric(descTracks, prometheus.GaugeValue, float64(s.Tracks))
	ch <- prometheus.MustNewConstMetric(descPktOut, prometheus.CounterValue, float64(s.PacketsOut))
	ch <- prometheus.MustNewConstMetric(descByteOut, prometheus.CounterValue, float64(s.BytesOut))
	ch <- prometheus.MustNewConstMetric(descPktIn, prometheus.CounterValue, float64(s.PacketsIn))
	ch <- prometheus.MustNewConstMetric(descByteIn, prometheus.CounterValue, float64(s.BytesIn))
	ch <- prometheus.MustNewConstMetric(descNACK, prometheus.CounterValue, float64(s.NACKs))
	ch <- prometheus.MustNewConstMetric(descPLI, prometheus.CounterValue, float64(s.PLIs))
	ch <- prometheus.MustNewConstMetric(descRTX, prometheus.CounterValue, float64(s.Retransmits))
	ch <- prometheus.MustNewConstMetric(descBWE, prometheus.GaugeValue, float64(s.EstimatedBandwidth))
	ch <- prometheus.MustNewConstMetric(descSwitch, prometheus.CounterValue, float64(s.Switches), "keyframe")
	ch <- prometheus.MustNewConstMetric(descSwitch, prometheus.CounterValue, float64(s.ForcedSwitches), "forced")
}

var _ prometheus.Collector = (*Metrics)(nil)
