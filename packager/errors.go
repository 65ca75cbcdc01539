package packager

import "errors"

// ErrBadRequest is wrapped by errors about malformed HLS URLs and query
// parameters; they are answered with 400 Bad Request.
var ErrBadRequest = errors.New("bad request")

// ErrNotFound is wrapped by errors about streams, renditions, segments or
// parts that do not exist (any more); they are answered with 404 Not Found.
var ErrNotFound = errors.New("not found")

// ErrNoCompatibleTrack is logged when a stream has no track HLS can carry
// (neither H.264 video nor AAC or Opus audio).
var ErrNoCompatibleTrack = errors.New("no H.264, AAC or Opus track")
