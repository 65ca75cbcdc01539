package transcode

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveengine/liveengine/engine"
)

// Transcoder is the engine hook that runs a ladder for every live source
// stream: one job per source, each publishing its rungs back into the
// engine as renditions "GROUP/NAME".
type Transcoder struct {
	conf   Config
	ladder Ladder
	eng    *engine.Engine
	log    *slog.Logger
	m      *metrics

	mu      sync.Mutex
	jobs    map[*engine.Stream]*job
	ladders map[string]Ladder // per-stream overrides from the control plane
	started bool
	closed  bool
	wg      sync.WaitGroup
}

var _ engine.Hook = (*Transcoder)(nil)

// New builds a transcoder for eng. Start attaches it to the engine.
func New(conf Config, eng *engine.Engine, log *slog.Logger) (*Transcoder, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if eng == nil {
		return nil, errors.New("transcode: nil engine")
	}
	if log == nil {
		log = slog.Default()
	}
	l, err := conf.DefaultLadder()
	if err != nil {
		return nil, err
	}
	return &Transcoder{
		conf:    conf,
		ladder:  l,
		eng:     eng,
		log:     log.With("component", "transcode"),
		m:       newMetrics(),
		jobs:    map[*engine.Stream]*job{},
		ladders: map[string]Ladder{},
	}, nil
}

// Start registers the transcoder as an engine hook; streams already live
// are laddered at once.
func (t *Transcoder) Start() error {
	t.mu.Lock()
	if t.started || t.closed {
		t.mu.Unlock()
		return fmt.Errorf("transcode: start: %w", engine.ErrClosed)
	}
	t.started = true
	t.mu.Unlock()
	t.eng.AddHook(t)
	t.log.Info("transcoder started", "enabled", t.conf.Enabled, "ladder", t.conf.Ladder, "rungs", len(t.ladder.Rungs))
	return nil
}

// Close stops every job: their readers detach, encoders flush, renditions
// go offline. It waits for all of it.
func (t *Transcoder) Close() {
	t.mu.Lock()
	t.closed = true
	jobs := make([]*job, 0, len(t.jobs))
	for _, j := range t.jobs {
		jobs = append(jobs, j)
	}
	t.mu.Unlock()
	for _, j := range jobs {
		j.stop()
	}
	t.wg.Wait()
}

// Collector returns the transcoder's Prometheus collector.
func (t *Transcoder) Collector() prometheus.Collector { return t.m }

// SetLadder gives the stream group its own ladder, used from its next
// publish on (the control plane's per-stream choice). It applies even when
// transcode.enabled is off.
func (t *Transcoder) SetLadder(group string, l Ladder) error {
	if err := l.Validate("ladder"); err != nil {
		return fmt.Errorf("transcode: ladder for %q: %w", group, err)
	}
	t.mu.Lock()
	t.ladders[group] = l
	t.mu.Unlock()
	return nil
}

// ClearLadder returns the stream group to the configured default ladder.
func (t *Transcoder) ClearLadder(group string) {
	t.mu.Lock()
	delete(t.ladders, group)
	t.mu.Unlock()
}

// LadderFor returns the ladder in effect for a stream group, and whether
// the ladder is on for it. The packager uses Ladder.Source to decide whether
// the multivariant playlist lists the original stream.
func (t *Transcoder) LadderFor(group string) (Ladder, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.ladders[group]; ok {
		return l, true
	}
	return t.ladder, t.conf.Enabled
}

// StreamStarted implements engine.Hook: a source stream with video and a
// ladder that encodes gets a job. It does not block: the job's work runs on
// its reader's goroutine and its rungs' goroutines.
func (t *Transcoder) StreamStarted(s *engine.Stream) {
	if s.Rendition() != "source" || s.VideoTrack() < 0 {
		return
	}
	l, on := t.LadderFor(s.Group())
	if !on || !l.Encodes() {
		return
	}
	vt := s.Tracks()[s.VideoTrack()]
	if vt.Codec != engine.CodecH264 && vt.Codec != engine.CodecH265 {
		t.log.Warn("stream not transcoded: video codec unsupported", "stream", s.ID(), "codec", vt.Codec)
		return
	}
	t.mu.Lock()
	if t.closed || t.jobs[s] != nil {
		t.mu.Unlock()
		return
	}
	j, err := newJob(t, s, l, false)
	if err != nil {
		t.mu.Unlock()
		t.log.Error("stream not transcoded", "stream", s.ID(), "error", err)
		return
	}
	t.jobs[s] = j
	t.wg.Add(1)
	t.m.jobs.Inc()
	t.mu.Unlock()
	if err := j.attach(); err != nil {
		t.log.Error("stream not transcoded", "stream", s.ID(), "error", err)
		j.finish()
	}
}

// StreamStopped implements engine.Hook. The job ends by itself: the stream's
// end closes its reader's queue, the reader drains and the job flushes.
func (t *Transcoder) StreamStopped(*engine.Stream) {}

// jobDone is called once by each job when everything it owned is freed.
func (t *Transcoder) jobDone(j *job) {
	t.mu.Lock()
	if t.jobs[j.src] == j {
		delete(t.jobs, j.src)
	}
	t.mu.Unlock()
	t.m.jobs.Dec()
	t.wg.Done()
}

// Jobs returns the ids of the source streams being transcoded.
func (t *Transcoder) Jobs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.jobs))
	for s := range t.jobs {
		out = append(out, s.ID())
	}
	return out
}
