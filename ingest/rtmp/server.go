package rtmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	gortmp "github.com/yutopp/go-rtmp"

	"github.com/liveengine/liveengine/engine"
)

// Server accepts RTMP publishers and publishes their media into the engine.
type Server struct {
	conf    Config
	eng     *engine.Engine
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ln      net.Listener
	rtmp    *gortmp.Server
	conns   map[*netConn]struct{}
	started bool
	closed  bool
}

// New builds an RTMP server for eng. Start begins listening.
func New(conf Config, eng *engine.Engine, log *slog.Logger) (*Server, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if eng == nil {
		return nil, errors.New("rtmp: nil engine")
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		conf:    conf,
		eng:     eng,
		log:     log.With("component", "rtmp"),
		metrics: newMetrics(),
		ctx:     ctx,
		cancel:  cancel,
		conns:   map[*netConn]struct{}{},
	}, nil
}

// Start listens on the configured address and serves connections in the
// background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.started {
		return fmt.Errorf("rtmp start: %w", engine.ErrClosed)
	}
	ln, err := net.Listen("tcp", s.conf.Addr)
	if err != nil {
		return fmt.Errorf("rtmp listen %s: %w", s.conf.Addr, err)
	}
	s.ln = ln
	s.rtmp = gortmp.NewServer(&gortmp.ServerConfig{OnConnect: s.onConnect})
	s.started = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.rtmp.Serve(&listener{Listener: ln, srv: s})
		if err != nil && !errors.Is(err, gortmp.ErrClosed) {
			s.log.Error("rtmp server stopped", "error", err)
		}
	}()
	s.log.Info("rtmp listening", "addr", ln.Addr().String(), "app", s.conf.App)
	return nil
}

// Addr returns the address the server listens on, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Collector returns the server's Prometheus collector.
func (s *Server) Collector() prometheus.Collector { return s.metrics }

// Close stops accepting, disconnects every connection (their streams go
// offline) and waits for the server's goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := make([]*netConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	srv, ln := s.rtmp, s.ln
	s.mu.Unlock()

	s.cancel()
	if srv != nil {
		// go-rtmp's Close marks the server done before closing the
		// listener, so Serve returns instead of retrying Accept.
		_ = srv.Close()
	}
	if ln != nil {
		// go-rtmp only closes a listener Serve has registered: a Close
		// right after Start (another component failed to start) would
		// leave Serve accepting forever and Wait below hanging.
		_ = ln.Close()
	}
	for _, c := range conns {
		c.shutdown()
	}
	s.wg.Wait()
	s.log.Info("rtmp server closed", "connections_closed", len(conns))
}

// onConnect wraps each accepted connection and gives go-rtmp its handler.
func (s *Server) onConnect(nc net.Conn) (io.ReadWriteCloser, *gortmp.ConnConfig) {
	c := &netConn{Conn: nc, timeout: s.conf.ReadTimeout}
	hook := &errorHook{}
	rl := logrus.New()
	rl.Out = io.Discard
	rl.Level = logrus.ErrorLevel
	rl.AddHook(hook)
	h := &connHandler{
		srv:    s,
		nc:     c,
		hook:   hook,
		remote: nc.RemoteAddr().String(),
		opened: time.Now(),
	}
	h.log = s.log.With("remote", h.remote)
	c.handler = h

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		// go-rtmp still runs the connection: closing it makes the
		// handshake fail at once.
		_ = nc.Close()
	} else {
		s.conns[c] = struct{}{}
		c.tracked = true
		s.wg.Add(1)
		s.metrics.connections.Add(1)
		s.mu.Unlock()
	}
	return c, &gortmp.ConnConfig{
		Handler:          h,
		ReaderBufferSize: 16 << 10,
		ControlState: gortmp.StreamControlStateConfig{
			MaxChunkSize: uint32(s.conf.MaxChunkSize),
			// Every chunk stream keeps its own reassembly buffer; real
			// encoders use a handful.
			MaxChunkStreams:   32,
			MaxMessageStreams: 8,
		},
		Logger: rl,
	}
}

// release is called once per tracked connection when go-rtmp closes it.
func (s *Server) release(c *netConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Add(-1)
	s.wg.Done()
}

// listener backs off on transient Accept errors: go-rtmp's Serve retries
// at once, which would spin on a persistent error such as EMFILE.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) || l.srv.ctx.Err() != nil {
			return nil, err
		}
		delay = min(max(5*time.Millisecond, 2*delay), time.Second)
		l.srv.log.Warn("rtmp accept failed, retrying", "error", err, "delay", delay.String())
		select {
		case <-time.After(delay):
		case <-l.srv.ctx.Done():
			return nil, err
		}
	}
}

// prePublishLimit caps what a connection may send before a publish is
// authorized: the handshake and commands take a few kilobytes, so an
// unauthenticated peer cannot make the server buffer chunk messages of
// up to 16 MiB on many chunk streams.
const prePublishLimit = 256 << 10

var errPrePublishLimit = fmt.Errorf("more than %d bytes before an authorized publish", prePublishLimit)

// netConn applies the read timeout, remembers the first read error (to
// tell a vanished peer from a malformed one) and tells the server when
// go-rtmp is done with the connection.
type netConn struct {
	net.Conn
	timeout time.Duration
	handler *connHandler
	tracked bool

	// Only the connection's read goroutine touches these.
	deadlineSet time.Time
	readErr     error
	readBytes   int64
	published   bool // a publish was authorized: the pre-publish cap is lifted

	closeOnce sync.Once
}

func (c *netConn) Read(b []byte) (int, error) {
	// Refreshing the deadline on every read costs a timer update; once
	// per quarter timeout is enough to keep the bound within 25%.
	if now := time.Now(); now.Sub(c.deadlineSet) > c.timeout/4 {
		_ = c.Conn.SetReadDeadline(now.Add(c.timeout))
		c.deadlineSet = now
	}
	n, err := c.Conn.Read(b)
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	if !c.published {
		c.readBytes += int64(n)
		if c.readBytes > prePublishLimit {
			// Not a network error: readErr stays nil so the close is
			// reported as malformed.
			return n, errPrePublishLimit
		}
	}
	return n, err
}

func (c *netConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}

// Close is called by go-rtmp when it is done with the connection, after
// the handler's OnClose.
func (c *netConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.tracked {
			c.handler.srv.release(c)
		}
	})
	return err
}

// shutdown closes the socket from outside the connection's goroutine; the
// read loop fails and go-rtmp then runs its normal close path.
func (c *netConn) shutdown() { _ = c.Conn.Close() }

// errorHook keeps the last error go-rtmp logged for a connection: it is
// the only place go-rtmp reports why it closed one.
type errorHook struct {
	mu  sync.Mutex
	msg string
}

func (h *errorHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel}
}

func (h *errorHook) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	h.msg = e.Message
	h.mu.Unlock()
	return nil
}

func (h *errorHook) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg
}
