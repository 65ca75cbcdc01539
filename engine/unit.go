package engine

import (
	"fmt"
	"time"
)

// Codec identifies the coding format of a track.
type Codec uint8

// Codecs the engine carries. New codecs are added here; the unit layout does
// not change (video units carry NAL units, audio units carry one frame).
const (
	CodecUnknown Codec = iota
	CodecH264
	CodecH265
	CodecAAC
	CodecOpus
)

// String returns the codec's short name as used in logs and metrics.
func (c Codec) String() string {
	switch c {
	case CodecH264:
		return "h264"
	case CodecH265:
		return "h265"
	case CodecAAC:
		return "aac"
	case CodecOpus:
		return "opus"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// IsVideo reports whether units of this codec are video access units.
func (c Codec) IsVideo() bool { return c == CodecH264 || c == CodecH265 }

// Track describes one elementary stream of a Stream. A Track is immutable once
// the stream is live; publishers that see a new codec configuration mid-stream
// carry the new parameter sets in-band (SPS/PPS NAL units in the access unit).
type Track struct {
	// Codec is the coding format.
	Codec Codec
	// ClockRate is the track's native clock (90000 for video, the sample
	// rate for audio); protocol packages use it when they convert PTS.
	ClockRate int

	// SPS and PPS are the H.264/H.265 parameter sets (VPS for H.265 only).
	VPS, SPS, PPS []byte
	// Width and Height are the coded picture size, when known.
	Width, Height int
	// FrameRate is the nominal frame rate, 0 when unknown.
	FrameRate float64
	// Bitrate is the nominal bit rate in bits/s, 0 when unknown.
	Bitrate int

	// AACConfig is the MPEG-4 AudioSpecificConfig of an AAC track.
	AACConfig []byte
	// SampleRate and Channels describe audio tracks.
	SampleRate, Channels int
}

// IsVideo reports whether the track carries video.
func (t *Track) IsVideo() bool { return t.Codec.IsVideo() }

// Unit is one access unit of one track: a video picture or an audio frame.
// Units are immutable once written to a stream: every reader shares the same
// *Unit and its byte slices, so nothing is copied on fan-out.
type Unit struct {
	// Track is the index of the unit's track in Stream.Tracks().
	Track int
	// PTS and DTS are the presentation and decoding times on the stream's
	// clock, counted from the stream's start. Protocols convert to and from
	// their own clocks once, at the edge.
	PTS, DTS time.Duration
	// Key marks a random access point (an IDR picture). Audio units are
	// always key units.
	Key bool
	// NTP is the wall-clock time that corresponds to PTS, used for
	// EXT-X-PROGRAM-DATE-TIME, RTCP sender reports and latency meters.
	NTP time.Time
	// NALUs is the video access unit, one NAL unit per element, without
	// start codes or length prefixes.
	NALUs [][]byte
	// Payload is one audio frame (a raw AAC access unit or an Opus packet).
	Payload []byte
}

// Size returns the payload size of the unit in bytes.
func (u *Unit) Size() int {
	n := len(u.Payload)
	for _, nalu := range u.NALUs {
		n += len(nalu)
	}
	return n
}
