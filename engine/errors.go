package engine

import "errors"

// ErrStreamBusy is returned when a second publisher claims a stream that is
// already live.
var ErrStreamBusy = errors.New("stream is already being published")

// ErrStreamNotFound is returned when a reader asks for a stream that is not live.
var ErrStreamNotFound = errors.New("stream not found")

// ErrUnknownKey is returned by an Authorizer for a stream key it does not know.
var ErrUnknownKey = errors.New("unknown stream key")

// ErrKeyRevoked is returned by an Authorizer for a stream key that was revoked.
var ErrKeyRevoked = errors.New("stream key revoked")

// ErrClosed is returned by operations on a closed engine, stream or publisher.
var ErrClosed = errors.New("closed")

// ErrNoTracks is returned when a publisher goes live without any track.
var ErrNoTracks = errors.New("publisher has no tracks")
