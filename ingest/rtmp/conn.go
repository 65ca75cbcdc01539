package rtmp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	gortmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"

	"github.com/liveengine/liveengine/engine"
)

// ErrUnknownApp is returned when a client connects to an application name
// other than the configured one.
var ErrUnknownApp = errors.New("unknown RTMP application")

// authTimeout bounds the publish authorization round trip to the bus.
const authTimeout = 5 * time.Second

var _ gortmp.Handler = (*connHandler)(nil)

// connHandler handles one RTMP connection. go-rtmp calls it from the
// connection's read goroutine only; the kick watcher touches nothing but
// the socket and the close reason.
type connHandler struct {
	gortmp.DefaultHandler

	srv    *Server
	nc     *netConn
	hook   *errorHook
	conn   *gortmp.Conn
	log    *slog.Logger
	remote string
	opened time.Time

	pub     *engine.Publisher
	sess    *session
	pubDone chan struct{} // closed when the current publish ends
	buf     bytes.Buffer

	// reason is why we closed the connection; the first one set wins.
	reason atomic.Pointer[closeReason]
}

type closeReason struct {
	text      string
	err       error
	malformed bool
}

func (h *connHandler) setReason(r closeReason) { h.reason.CompareAndSwap(nil, &r) }

// maskKey keeps stream keys, which are secrets, out of logs.
func maskKey(k string) string {
	if len(k) <= 4 {
		return "****"
	}
	return k[:4] + "****"
}

// OnServe implements gortmp.Handler.
func (h *connHandler) OnServe(conn *gortmp.Conn) { h.conn = conn }

// OnConnect implements gortmp.Handler: only the configured app is served.
func (h *connHandler) OnConnect(_ uint32, cmd *message.NetConnectionConnect) error {
	app := strings.Trim(cmd.Command.App, "/")
	if i := strings.IndexByte(app, '?'); i >= 0 {
		app = app[:i] // some encoders append the key's query to the app
	}
	if app != h.srv.conf.App {
		h.srv.metrics.refuse(refusedBadApp)
		err := fmt.Errorf("rtmp connect: app %q: %w", app, ErrUnknownApp)
		h.setReason(closeReason{text: "connect refused", err: err})
		return err
	}
	return nil
}

// OnPublish implements gortmp.Handler: the key is authorized before any
// media is read.
func (h *connHandler) OnPublish(sctx *gortmp.StreamContext, _ uint32, cmd *message.NetStreamPublish) error {
	if h.pub != nil {
		err := errors.New("rtmp publish: this connection is already publishing")
		h.setReason(closeReason{text: "publish refused", err: err})
		return err
	}
	key := cmd.PublishingName
	if i := strings.IndexByte(key, '?'); i >= 0 {
		key = key[:i]
	}
	ctx, cancel := context.WithTimeout(h.srv.ctx, authTimeout)
	pub, err := h.srv.eng.Authorize(ctx, engine.PublishRequest{Key: key, Protocol: "rtmp", Remote: h.remote})
	cancel()
	if err != nil {
		reason, code, desc := refusal(err)
		h.srv.metrics.refuse(reason)
		h.sendStatus(sctx.StreamID, code, desc)
		err = fmt.Errorf("rtmp publish %s: %w", maskKey(key), err)
		h.setReason(closeReason{text: "publish refused: " + reason, err: err})
		return err
	}
	h.srv.metrics.accepted.Add(1)
	h.nc.published = true
	h.pub = pub
	h.sess = newSession(h.srv.conf, pub, h.log.With("stream", pub.StreamID()))
	h.pubDone = make(chan struct{})
	h.log.Info("rtmp publish accepted", "stream", pub.StreamID())
	h.srv.wg.Add(1)
	go h.watch(pub, h.pubDone)
	return nil
}

// ErrPlayUnsupported is returned to RTMP clients that ask to play: this
// server only ingests; playback is HLS and WebRTC.
var ErrPlayUnsupported = errors.New("RTMP playback is not supported")

// OnPlay implements gortmp.Handler: play requests are refused.
func (h *connHandler) OnPlay(*gortmp.StreamContext, uint32, *message.NetStreamPlay) error {
	err := fmt.Errorf("rtmp play: %w", ErrPlayUnsupported)
	h.setReason(closeReason{text: "play refused", err: err})
	return err
}

// refusal maps an authorization error to a metric reason and the onStatus
// code and description the client shows its user.
func refusal(err error) (reason string, code message.NetStreamOnStatusCode, desc string) {
	switch {
	case errors.Is(err, engine.ErrUnknownKey):
		return refusedUnknownKey, message.NetStreamOnStatusCodePublishBadName, "unknown stream key"
	case errors.Is(err, engine.ErrKeyRevoked):
		return refusedRevokedKey, message.NetStreamOnStatusCodePublishBadName, "stream key revoked"
	case errors.Is(err, engine.ErrStreamBusy):
		return refusedBusy, message.NetStreamOnStatusCodePublishBadName, "stream is already being published"
	case errors.Is(err, engine.ErrClosed):
		return refusedClosed, message.NetStreamOnStatusCodePublishFailed, "server shutting down"
	}
	return refusedError, message.NetStreamOnStatusCodePublishFailed, "publish authorization unavailable, retry later"
}

// sendStatus sends an error onStatus on the publishing stream. go-rtmp
// follows it with its own generic NetStream.Publish.Failed; clients report
// the first.
func (h *connHandler) sendStatus(streamID uint32, code message.NetStreamOnStatusCode, desc string) {
	if h.conn == nil {
		return
	}
	body := new(bytes.Buffer)
	enc := message.NewAMFEncoder(body, message.EncodingTypeAMF0)
	status := &message.NetStreamOnStatus{InfoObject: message.NetStreamOnStatusInfoObject{
		Level: message.NetStreamOnStatusLevelError, Code: code, Description: desc,
	}}
	if err := message.EncodeBodyAnyValues(enc, status); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(h.srv.ctx, 2*time.Second)
	defer cancel()
	const statusChunkStream = 5
	_ = h.conn.Write(ctx, statusChunkStream, 0, &gortmp.ChunkMessage{
		StreamID: streamID,
		Message: &message.CommandMessage{
			CommandName: "onStatus",
			Encoding:    message.EncodingTypeAMF0,
			Body:        body,
		},
	})
}

// watch closes the connection when the engine ends the publish: a kick
// from the control plane, a revoked key, the engine closing.
func (h *connHandler) watch(pub *engine.Publisher, done chan struct{}) {
	defer h.srv.wg.Done()
	select {
	case <-done:
		return
	case <-pub.Context().Done():
	}
	select {
	case <-done:
		return // the publish ended on our side first
	default:
	}
	cause := context.Cause(pub.Context())
	h.setReason(closeReason{text: "disconnected by the engine", err: cause})
	h.nc.shutdown()
}

// endPublish takes the stream offline; the connection may publish again.
func (h *connHandler) endPublish() {
	if h.pub == nil {
		return
	}
	close(h.pubDone)
	h.pub.Close()
	h.pub, h.sess, h.pubDone = nil, nil, nil
}

// OnFCUnpublish implements gortmp.Handler.
func (h *connHandler) OnFCUnpublish(uint32, *message.NetStreamFCUnpublish) error {
	h.endPublish()
	return nil
}

// OnDeleteStream implements gortmp.Handler.
func (h *connHandler) OnDeleteStream(uint32, *message.NetStreamDeleteStream) error {
	h.endPublish()
	return nil
}

// OnSetDataFrame implements gortmp.Handler (onMetaData).
func (h *connHandler) OnSetDataFrame(_ uint32, data *message.NetStreamSetDataFrame) (err error) {
	if h.sess == nil {
		return nil
	}
	defer h.recoverMedia(&err)
	return h.media(h.sess.metadata(data.Payload))
}

// OnVideo implements gortmp.Handler.
func (h *connHandler) OnVideo(ts uint32, payload io.Reader) (err error) {
	if h.sess == nil {
		return nil
	}
	defer h.recoverMedia(&err)
	h.buf.Reset()
	if _, err := h.buf.ReadFrom(payload); err != nil {
		return fmt.Errorf("rtmp video: %w", err)
	}
	return h.media(h.sess.video(ts, h.buf.Bytes()))
}

// OnAudio implements gortmp.Handler.
func (h *connHandler) OnAudio(ts uint32, payload io.Reader) (err error) {
	if h.sess == nil {
		return nil
	}
	defer h.recoverMedia(&err)
	h.buf.Reset()
	if _, err := h.buf.ReadFrom(payload); err != nil {
		return fmt.Errorf("rtmp audio: %w", err)
	}
	return h.media(h.sess.audio(ts, h.buf.Bytes()))
}

// media records why a media error closes the connection.
func (h *connHandler) media(err error) error {
	if err == nil {
		return nil
	}
	malformed := errors.Is(err, ErrMalformedTag) || errors.Is(err, ErrMalformedAMF)
	text := "media error"
	if malformed {
		text = "malformed media"
	}
	h.setReason(closeReason{text: text, err: err, malformed: malformed})
	return err
}

// recoverMedia turns a panic in media handling into a connection error so
// a bug triggered by one publisher cannot take the others down.
func (h *connHandler) recoverMedia(err *error) {
	if r := recover(); r != nil {
		h.log.Error("rtmp media handler panic", "panic", r, "stack", string(debug.Stack()))
		*err = h.media(fmt.Errorf("rtmp media: panic: %v: %w", r, ErrMalformedTag))
	}
}

// OnClose implements gortmp.Handler: the stream goes offline and the end
// of the connection is logged once, with its cause.
func (h *connHandler) OnClose() {
	stream := ""
	if h.pub != nil {
		stream = h.pub.StreamID()
	}
	h.endPublish()

	attrs := []any{"duration", time.Since(h.opened).Round(time.Millisecond).String()}
	if stream != "" {
		attrs = append(attrs, "stream", stream)
	}
	level := slog.LevelInfo
	r := h.reason.Load()
	switch {
	case r != nil:
		attrs = append(attrs, "reason", r.text)
		if r.err != nil {
			attrs = append(attrs, "error", r.err.Error())
		}
		if r.malformed {
			h.srv.metrics.malformed.Add(1)
			level = slog.LevelWarn
		}
	case h.srv.ctx.Err() != nil:
		attrs = append(attrs, "reason", "server closing")
	default:
		msg := h.hook.last()
		readErr := h.nc.readErr
		var ne net.Error
		switch {
		case msg == "" || errors.Is(readErr, net.ErrClosed):
			attrs = append(attrs, "reason", "peer closed")
		case errors.As(readErr, &ne) && ne.Timeout():
			attrs = append(attrs, "reason", "read timeout")
		case errors.Is(readErr, io.EOF):
			attrs = append(attrs, "reason", "peer closed mid-message")
		case readErr != nil:
			attrs = append(attrs, "reason", "connection error", "error", readErr.Error())
		default:
			// go-rtmp gave up on bytes it read successfully: bad
			// handshake, chunking, AMF, or a panic it recovered.
			h.srv.metrics.malformed.Add(1)
			level = slog.LevelWarn
			attrs = append(attrs, "reason", "malformed RTMP", "error", firstLine(msg))
		}
	}
	h.log.Log(context.Background(), level, "rtmp connection closed", attrs...)
}

// firstLine trims go-rtmp's "%+v" errors, which carry stack traces, and
// the wording of its log line around them.
func firstLine(s string) string {
	s = strings.TrimPrefix(s, "Server closed by error: Err = ")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	const max = 300
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
