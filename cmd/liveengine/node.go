package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/redisbus"
)

// component is a part of a node with a start/stop lifecycle.
type component interface {
	Start() error
	Close()
}

// route mounts a handler on a URL prefix of the engine HTTP server.
type route struct {
	prefix  string
	handler fasthttp.RequestHandler
}

// node is one running process: the engine side, the control side, or both,
// with the bus between them.
type node struct {
	mode  string
	conf  Config
	log   *slog.Logger
	bus   engine.Bus
	eng   *engine.Engine
	reg   *prometheus.Registry
	fatal chan error

	// components in start order; closed in reverse.
	components []namedComponent
	routes     []route
	httpSrv    *fasthttp.Server
	httpLn     net.Listener
	httpDone   chan struct{}
	closeOnce  sync.Once
	// closers release shared clients after every component closed.
	closers []func()
}

type namedComponent struct {
	name string
	c    component
}

func newNode(ctx context.Context, mode string, conf Config, log *slog.Logger) (*node, error) {
	n := &node{mode: mode, conf: conf, log: log, reg: prometheus.NewRegistry(), fatal: make(chan error, 4)}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bus, err := openBus(ctx, conf.Bus, log)
	if err != nil {
		return nil, err
	}
	n.bus = bus
	if rb, ok := bus.(*redisbus.Bus); ok {
		n.reg.MustRegister(rb.Collector())
	}
	if mode == "all" || mode == "engine" {
		eng, err := engine.New(conf.Engine, bus, log)
		if err != nil {
			bus.Close()
			return nil, err
		}
		n.eng = eng
		n.reg.MustRegister(eng.Collector())
		if err := n.buildEngineComponents(); err != nil {
			bus.Close()
			return nil, err
		}
	}
	if mode == "all" || mode == "control" {
		if err := n.buildControlComponents(); err != nil {
			n.closeComponents()
			bus.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *node) add(name string, c component) {
	n.components = append(n.components, namedComponent{name, c})
}

func (n *node) register(c prometheus.Collector) {
	if c != nil {
		n.reg.MustRegister(c)
	}
}

func (n *node) start() error {
	if n.eng != nil {
		if err := n.eng.Start(); err != nil {
			return err
		}
	}
	for _, nc := range n.components {
		if err := nc.c.Start(); err != nil {
			return fmt.Errorf("start %s: %w", nc.name, err)
		}
	}
	if n.eng != nil {
		return n.startHTTP()
	}
	return nil
}

func (n *node) startHTTP() error {
	metrics := n.metricsHandler()
	routes := append([]route(nil), n.routes...)
	handler := func(ctx *fasthttp.RequestCtx) {
		p := string(ctx.Path())
		for _, r := range routes {
			if strings.HasPrefix(p, r.prefix) {
				r.handler(ctx)
				return
			}
		}
		if n.conf.HTTP.Pprof && strings.HasPrefix(p, "/debug/pprof/") {
			pprofhandler.PprofHandler(ctx)
			return
		}
		switch p {
		case "/metrics":
			metrics(ctx)
		case "/healthz":
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
		default:
			ctx.Error("not found: LiveEngine serves /hls/, /whip/, /whep/, /rtc/, /webrtc/, /metrics, /healthz", fasthttp.StatusNotFound)
		}
	}
	ln, err := net.Listen("tcp", n.conf.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr %s: %w", n.conf.HTTP.Addr, err)
	}
	n.httpLn = ln
	n.httpSrv = &fasthttp.Server{
		Handler:            handler,
		Name:               "LiveEngine",
		MaxRequestBodySize: 1 << 20,
		ReadTimeout:        30 * time.Second,
		IdleTimeout:        60 * time.Second,
		NoDefaultDate:      false,
		Logger:             fasthttpLogger{n.log},
	}
	n.httpDone = make(chan struct{})
	go func() {
		defer close(n.httpDone)
		if err := n.httpSrv.Serve(ln); err != nil {
			n.fatal <- fmt.Errorf("http server: %w", err)
		}
	}()
	n.log.Info("engine HTTP listening", "addr", ln.Addr().String(), "paths", "/hls/ /whip/ /whep/ /rtc/ /webrtc/ /metrics")
	return nil
}

func (n *node) metricsHandler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "http")
}

// close stops everything: publishers first (so playlists end with
// EXT-X-ENDLIST), then the engine, then the rest, then the HTTP server and
// the bus.
func (n *node) close() {
	n.closeOnce.Do(func() {
		n.closeComponents()
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), n.conf.HTTP.ShutdownTimeout)
			if err := n.httpSrv.ShutdownWithContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				n.log.Warn("http shutdown", "error", err)
			}
			cancel()
			<-n.httpDone
		}
		for _, c := range n.closers {
			c()
		}
		if n.bus != nil {
			n.bus.Close()
		}
	})
}

func (n *node) closeComponents() {
	// Ingest components come first in the list: closing them ends the
	// publishers. The engine closes next so internal publishers
	// (renditions) end too, then the remaining components in reverse.
	ingest := 0
	for _, nc := range n.components {
		if strings.HasPrefix(nc.name, "ingest/") {
			nc.c.Close()
			ingest++
		}
	}
	if n.eng != nil {
		n.eng.Close()
	}
	for i := len(n.components) - 1; i >= 0; i-- {
		if !strings.HasPrefix(n.components[i].name, "ingest/") {
			n.components[i].c.Close()
		}
	}
}

func openBus(ctx context.Context, c BusConfig, log *slog.Logger) (engine.Bus, error) {
	if c.URL == "" {
		return engine.NewLocalBus(), nil
	}
	return openRedisBus(ctx, c.URL, c.Redis, log)
}
