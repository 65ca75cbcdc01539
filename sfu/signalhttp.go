package sfu

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// Errors of the WHIP/WHEP HTTP exchange; each maps to one HTTP status.
var (
	// ErrBadSDP is returned for an offer that is not a usable SDP (400).
	ErrBadSDP = errors.New("bad SDP offer")
	// ErrBadTrickle is returned for a PATCH body that is not an ICE
	// fragment (400).
	ErrBadTrickle = errors.New("bad trickle ICE fragment")
	// ErrBodyTooLarge is returned for a body above webrtc.max_sdp_bytes (413).
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrSessionNotFound is returned for an unknown session id (404).
	ErrSessionNotFound = errors.New("session not found")
)

// ParseOffer checks that body is an SDP offer with at least one audio or
// video section and returns it with the kinds of media it offers.
func ParseOffer(body []byte) (offer webrtc.SessionDescription, hasVideo, hasAudio bool, err error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return offer, false, false, fmt.Errorf("%w: empty body", ErrBadSDP)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return offer, false, false, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	for _, m := range sd.MediaDescriptions {
		switch m.MediaName.Media {
		case "video":
			hasVideo = true
		case "audio":
			hasAudio = true
		}
	}
	if !hasVideo && !hasAudio {
		return offer, false, false, fmt.Errorf("%w: no audio or video media section", ErrBadSDP)
	}
	return webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(body)}, hasVideo, hasAudio, nil
}

// ParseTrickleFragment reads the ICE candidates of a trickle ICE SDP
// fragment (RFC 8840, application/trickle-ice-sdpfrag). It reports whether
// the fragment ends the candidates (a=end-of-candidates).
func ParseTrickleFragment(body []byte) (cands []webrtc.ICECandidateInit, end bool, err error) {
	var mid string
	var mline uint16
	sections := -1
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "":
		case strings.HasPrefix(line, "m="):
			sections++
			mline = uint16(max(sections, 0))
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := strings.TrimPrefix(line, "a=")
			if len(strings.Fields(c)) < 8 {
				return nil, false, fmt.Errorf("%w: short candidate line %q", ErrBadTrickle, line)
			}
			ci := webrtc.ICECandidateInit{Candidate: c, SDPMLineIndex: &mline}
			if mid != "" {
				m := mid
				ci.SDPMid = &m
			}
			cands = append(cands, ci)
		case line == "a=end-of-candidates":
			end = true
		case len(line) < 2 || line[1] != '=':
			return nil, false, fmt.Errorf("%w: line %q is not an SDP line", ErrBadTrickle, line)
		}
	}
	return cands, end, nil
}

// ReadSDPBody checks the size and content type of a WHIP/WHEP POST or PATCH
// and returns its body; on failure it has already written the answer.
func ReadSDPBody(ctx *fasthttp.RequestCtx, maxBytes int, contentType string) ([]byte, bool) {
	if n := ctx.Request.Header.ContentLength(); n > maxBytes {
		HTTPError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("%w: %d bytes, limit %d (webrtc.max_sdp_bytes)", ErrBodyTooLarge, n, maxBytes))
		return nil, false
	}
	body := ctx.PostBody()
	if len(body) > maxBytes {
		HTTPError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("%w: %d bytes, limit %d (webrtc.max_sdp_bytes)", ErrBodyTooLarge, len(body), maxBytes))
		return nil, false
	}
	ct := string(ctx.Request.Header.ContentType())
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if ct = strings.TrimSpace(ct); ct != "" && !strings.EqualFold(ct, contentType) {
		HTTPError(ctx, fasthttp.StatusUnsupportedMediaType, fmt.Errorf("content type %q, want %q", ct, contentType))
		return nil, false
	}
	return body, true
}

// HTTPError writes a plain-text error answer.
func HTTPError(ctx *fasthttp.RequestCtx, status int, err error) {
	ctx.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(err.Error() + "\n")
}

// WriteAnswer writes the 201 Created answer of a WHIP/WHEP POST.
func WriteAnswer(ctx *fasthttp.RequestCtx, location string, answer *webrtc.SessionDescription, iceServers []webrtc.ICEServer) {
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.Response.Header.Set("Location", location)
	ctx.Response.Header.Set("Access-Control-Expose-Headers", "Location, Link")
	for _, s := range iceServers {
		for _, u := range s.URLs {
			link := fmt.Sprintf("<%s>; rel=\"ice-server\"", u)
			if s.Username != "" {
				link += fmt.Sprintf("; username=%q; credential=%q; credential-type=\"password\"", s.Username, fmt.Sprint(s.Credential))
			}
			ctx.Response.Header.Add("Link", link)
		}
	}
	ctx.SetContentType("application/sdp")
	ctx.SetBodyString(answer.SDP)
}

// CORS answers a preflight and sets the headers browsers need for a WHIP or
// WHEP page served from another origin. It reports whether the request was
// a preflight.
func CORS(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", "*")
	if !ctx.IsOptions() {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, Link")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return true
}

// NewSessionID returns a random session id for Location URLs.
func NewSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Answer applies offer to pc and returns the local answer with every
// candidate gathered (ICE on the muxed ports gathers at once).
func Answer(pc *webrtc.PeerConnection, offer webrtc.SessionDescription) (*webrtc.SessionDescription, error) {
	if err := pc.SetRemoteDescription(offer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: create answer: %v", ErrBadSDP, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	}
	return pc.LocalDescription(), nil
}
