package sfu

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Signalling message types (PROTOCOL.md).
const (
	MsgJoin              = "join"
	MsgJoined            = "joined"
	MsgOffer             = "offer"
	MsgAnswer            = "answer"
	MsgCandidate         = "candidate"
	MsgMute              = "mute"
	MsgLeave             = "leave"
	MsgParticipantJoined = "participant_joined"
	MsgParticipantLeft   = "participant_left"
	MsgTrackPublished    = "track_published"
	MsgTrackUnpublished  = "track_unpublished"
	MsgTrackMuted        = "track_muted"
	MsgError             = "error"
)

// Track sources.
const (
	SourceCamera           = "camera"
	SourceMicrophone       = "microphone"
	SourceScreenShare      = "screen_share"
	SourceScreenShareAudio = "screen_share_audio"
)

// maxMessageBytes bounds one signalling message.
const maxMessageBytes = 256 << 10

// ErrBadMessage is returned for a signalling message that does not parse or
// lacks what its type needs.
var ErrBadMessage = errors.New("bad signalling message")

// ParticipantInfo describes a room participant.
type ParticipantInfo struct {
	Identity   string `json:"identity"`
	Name       string `json:"name,omitempty"`
	CanPublish bool   `json:"can_publish"`
}

// TrackInfo describes a published track. A subscriber's remote track has
// ID as its track id and the publisher's identity as its stream id.
type TrackInfo struct {
	ID          string `json:"id"`
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
	Source      string `json:"source"`
	Muted       bool   `json:"muted"`
}

// Message is one signalling message, either way; Type says which fields
// are set.
type Message struct {
	Type string `json:"type"`

	Token     string                   `json:"token,omitempty"`
	SDP       string                   `json:"sdp,omitempty"`
	Sources   map[string]string        `json:"sources,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	TrackID   string                   `json:"track_id,omitempty"`
	Muted     *bool                    `json:"muted,omitempty"`

	Room         string             `json:"room,omitempty"`
	Kind         string             `json:"kind,omitempty"`
	Participant  *ParticipantInfo   `json:"participant,omitempty"`
	Participants []ParticipantInfo  `json:"participants,omitempty"`
	Track        *TrackInfo         `json:"track,omitempty"`
	Tracks       []TrackInfo        `json:"tracks,omitempty"`
	ICEServers   []webrtc.ICEServer `json:"ice_servers,omitempty"`

	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

var validSources = map[string]bool{SourceCamera: true, SourceMicrophone: true, SourceScreenShare: true, SourceScreenShareAudio: true}

// ParseClientMessage decodes and checks a message a client sent.
func ParseClientMessage(b []byte) (*Message, error) {
	if len(b) > maxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadMessage, len(b), maxMessageBytes)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch m.Type {
	case MsgJoin:
		if m.Token == "" {
			return nil, fmt.Errorf("%w: join without token", ErrBadMessage)
		}
	case MsgOffer, MsgAnswer:
		if m.SDP == "" {
			return nil, fmt.Errorf("%w: %s without sdp", ErrBadMessage, m.Type)
		}
		for id, src := range m.Sources {
			if !validSources[src] {
				return nil, fmt.Errorf("%w: track %q has unknown source %q", ErrBadMessage, id, src)
			}
		}
	case MsgCandidate:
		if m.Candidate == nil {
			return nil, fmt.Errorf("%w: candidate without candidate", ErrBadMessage)
		}
	case MsgMute:
		if m.TrackID == "" || m.Muted == nil {
			return nil, fmt.Errorf("%w: mute needs track_id and muted", ErrBadMessage)
		}
	case MsgLeave:
	case "":
		return nil, fmt.Errorf("%w: no type", ErrBadMessage)
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrBadMessage, m.Type)
	}
	return &m, nil
}
