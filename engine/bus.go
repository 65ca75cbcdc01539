package engine

import (
	"context"
	"encoding/json"
	"time"
)

// Grant is what an Authorizer answers for a valid stream key: which stream the
// key publishes and the settings the control plane attached to it.
type Grant struct {
	// StreamID is the public id of the stream (playback URLs use it).
	StreamID string `json:"stream_id"`
	// UserID owns the stream, empty in open mode.
	UserID string `json:"user_id,omitempty"`
	// Ladder names the transcoding ladder preset; empty means the default.
	Ladder string `json:"ladder,omitempty"`
	// Record asks the engine to record the stream.
	Record bool `json:"record,omitempty"`
}

// Authorizer decides whether a stream key may publish. It answers
// ErrUnknownKey or ErrKeyRevoked for keys that must be refused.
type Authorizer interface {
	AuthorizePublish(ctx context.Context, key string) (Grant, error)
}

// EventKind names a lifecycle event.
type EventKind string

// Lifecycle events, engine → control. They are durable: a control plane that
// restarts reads the ones it missed.
const (
	EventPublishStarted EventKind = "publish_started"
	EventPublishStopped EventKind = "publish_stopped"
	EventRecordingReady EventKind = "recording_ready"
	EventNodeUp         EventKind = "node_up"
	EventNodeDown       EventKind = "node_down"
)

// Event is one lifecycle event.
type Event struct {
	// ID is assigned by the bus when the event is appended.
	ID       string            `json:"id,omitempty"`
	Kind     EventKind         `json:"kind"`
	StreamID string            `json:"stream_id,omitempty"`
	NodeID   string            `json:"node_id,omitempty"`
	Protocol string            `json:"protocol,omitempty"`
	Remote   string            `json:"remote,omitempty"`
	Time     time.Time         `json:"time"`
	Data     map[string]string `json:"data,omitempty"`
}

// Stats is a live-statistics sample of one stream, engine → control. Stats are
// ephemeral: a sample nobody hears is simply replaced by the next one.
type Stats struct {
	StreamID string    `json:"stream_id"`
	NodeID   string    `json:"node_id"`
	Time     time.Time `json:"time"`
	// Viewers counts readers that are people (HLS sessions, WebRTC peers),
	// not internal readers such as the transcoder or the packager.
	Viewers   int     `json:"viewers"`
	BitrateIn int64   `json:"bitrate_in"`
	FPS       float64 `json:"fps"`
	Dropped   uint64  `json:"dropped"`
}

// CommandKind names a command, control → engine.
type CommandKind string

// Commands the engine obeys.
const (
	// CommandKick disconnects the publisher of a stream; it may publish again.
	CommandKick CommandKind = "kick"
	// CommandEnd ends a stream: the publisher is disconnected.
	CommandEnd CommandKind = "end"
	// CommandMute mutes a participant of a room (SFU).
	CommandMute CommandKind = "mute"
)

// Command is an order from the control plane to engine nodes.
type Command struct {
	Kind CommandKind `json:"kind"`
	// NodeID targets one node; empty means every node.
	NodeID      string `json:"node_id,omitempty"`
	StreamID    string `json:"stream_id,omitempty"`
	Participant string `json:"participant,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Node is an engine node's registry entry, refreshed by heartbeats.
type Node struct {
	ID      string    `json:"id"`
	RTMPURL string    `json:"rtmp_url,omitempty"`
	HTTPURL string    `json:"http_url,omitempty"`
	Streams int       `json:"streams"`
	Readers int       `json:"readers"`
	CPU     float64   `json:"cpu"`
	Updated time.Time `json:"updated"`
}

// Message is one pub/sub delivery.
type Message struct {
	Topic   string
	Payload []byte
}

// Subscription is a live pub/sub subscription. C is closed after Close.
type Subscription interface {
	C() <-chan Message
	Close() error
}

// Pub/sub topics used by the engine and the control plane.
const (
	TopicStats    = "stats"
	TopicCommands = "commands"
)

// Bus is the coordination channel between engine nodes and control nodes.
// Two implementations satisfy the same contract tests (engine/bustest): the
// in-process LocalBus for `liveengine all`, and redisbus for several nodes.
type Bus interface {
	Authorizer

	// SetStreamKey records that key publishes the stream of the grant.
	SetStreamKey(ctx context.Context, key string, g Grant) error
	// RevokeStreamKey makes key refused from now on (after the engine's
	// short authorization cache expires).
	RevokeStreamKey(ctx context.Context, key string) error

	// AppendEvent appends a durable lifecycle event.
	AppendEvent(ctx context.Context, ev Event) error
	// ConsumeEvents delivers events to fn for the consumer group, in order,
	// until ctx ends. An event is acknowledged when fn returns nil; events
	// not acknowledged (fn failed, or the process died) are delivered again
	// to the group. A new group starts at the beginning of the log.
	ConsumeEvents(ctx context.Context, group, consumer string, fn func(Event) error) error

	// Publish sends an ephemeral message to every current subscriber of topic.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe listens to topic until the subscription is closed.
	Subscribe(ctx context.Context, topic string) (Subscription, error)

	// Heartbeat refreshes a node's registry entry; it expires after ttl.
	Heartbeat(ctx context.Context, n Node, ttl time.Duration) error
	// Nodes lists the nodes whose entries have not expired.
	Nodes(ctx context.Context) ([]Node, error)

	// Close releases the bus's resources.
	Close() error
}

// SendCommand publishes a command to engine nodes.
func SendCommand(ctx context.Context, b Bus, c Command) error {
	payload, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Publish(ctx, TopicCommands, payload)
}

// PublishStats publishes a stats sample.
func PublishStats(ctx context.Context, b Bus, s Stats) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.Publish(ctx, TopicStats, payload)
}
