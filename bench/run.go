package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Run collects the figures of one scenario while it runs. Clients update
// the counters from their own goroutines; the progress loop turns them into
// a timeline once per second.
type Run struct {
	Scenario string
	Target   string
	Clients  int
	// FramesLabel names the Frames rate on progress lines ("fps" unless a
	// scenario counts something else, like comments sent).
	FramesLabel string

	// Active is the number of connected clients.
	Active atomic.Int64
	// Bytes counts media or payload bytes moved (sent or received).
	Bytes atomic.Int64
	// Frames counts video frames (or messages, for API scenarios).
	Frames atomic.Int64
	// Ops counts completed operations (parts fetched, messages, gifts).
	Ops atomic.Int64
	// Errors counts failures; ErrorSamples keeps the first few messages.
	Errors atomic.Int64
	// Stalls counts playback stalls (HLS) or freezes (WHEP).
	Stalls atomic.Int64
	// Retries counts requests repeated at once after a network error.
	Retries atomic.Int64
	// Packets and Lost count RTP packets received and packets never
	// received (sequence gaps not filled by a late or resent packet).
	Packets atomic.Int64
	Lost    atomic.Int64
	// LostAudio is the part of Lost on audio tracks.
	LostAudio atomic.Int64

	start time.Time
	proc  *ProcSampler

	mu       sync.Mutex
	latency  []float64 // glass-to-glass receive latency, ms
	display  []float64 // latency at the simulated display time, ms
	edge     []float64 // live-edge delay, ms
	opLat    []float64 // operation latency (chat broadcast, gift call), ms
	window   []float64 // latency samples of the current second
	errs     []string
	timeline []Point
	notes    []string
	steady   *Steady
}

// Point is one second of the timeline.
type Point struct {
	T        float64 `json:"t_s"`
	Active   int64   `json:"active"`
	Mbps     float64 `json:"mbps"`
	FPS      float64 `json:"fps"`
	OpsPerS  float64 `json:"ops_per_s"`
	Errors   int64   `json:"errors"`
	Stalls   int64   `json:"stalls"`
	LatP50   float64 `json:"latency_p50_ms"`
	LatP95   float64 `json:"latency_p95_ms"`
	CPU      float64 `json:"server_cpu_pct"`
	HostCPU  float64 `json:"host_cpu_pct"`
	RSSMB    float64 `json:"server_rss_mb"`
	Interval float64 `json:"-"`
}

// NewRun starts a run's clock.
func NewRun(scenario, target string, clients int) *Run {
	return &Run{Scenario: scenario, Target: target, Clients: clients, start: time.Now()}
}

// Latency records a glass-to-glass latency sample (receive time - stamp).
func (r *Run) Latency(d time.Duration) {
	ms := float64(d) / 1e6
	r.mu.Lock()
	r.latency = append(r.latency, ms)
	r.window = append(r.window, ms)
	r.mu.Unlock()
}

// DisplayLatency records a latency sample taken at the time a player would
// show the frame (its buffer and stalls included).
func (r *Run) DisplayLatency(d time.Duration) {
	r.mu.Lock()
	r.display = append(r.display, float64(d)/1e6)
	r.mu.Unlock()
}

// EdgeDelay records a live-edge delay sample.
func (r *Run) EdgeDelay(d time.Duration) {
	r.mu.Lock()
	r.edge = append(r.edge, float64(d)/1e6)
	r.mu.Unlock()
}

// OpLatency records an operation latency sample.
func (r *Run) OpLatency(d time.Duration) {
	ms := float64(d) / 1e6
	r.mu.Lock()
	r.opLat = append(r.opLat, ms)
	r.window = append(r.window, ms)
	r.mu.Unlock()
}

// OpLatencies records a batch of operation latency samples under one lock
// (for callers that gather thousands per second).
func (r *Run) OpLatencies(ds []time.Duration) {
	r.mu.Lock()
	for _, d := range ds {
		ms := float64(d) / 1e6
		r.opLat = append(r.opLat, ms)
		r.window = append(r.window, ms)
	}
	r.mu.Unlock()
}

// Error counts a failure and keeps its message if it is among the first.
func (r *Run) Error(err error) {
	if err == nil {
		return
	}
	r.Errors.Add(1)
	r.mu.Lock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

// Note adds a line to the report (an invariant check result, a warning).
func (r *Run) Note(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// Elapsed is the time since the run started.
func (r *Run) Elapsed() time.Duration { return time.Since(r.start) }

type tick struct {
	at                                 time.Time
	bytes, frames, ops, errors, stalls int64
}

func (r *Run) snapshot() tick {
	return tick{time.Now(), r.Bytes.Load(), r.Frames.Load(), r.Ops.Load(), r.Errors.Load(), r.Stalls.Load()}
}

// sample closes one timeline interval.
func (r *Run) sample(prev tick) (Point, tick) {
	now := r.snapshot()
	dt := now.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = 1e-9
	}
	p := Point{
		T:        now.at.Sub(r.start).Seconds(),
		Active:   r.Active.Load(),
		Mbps:     float64(now.bytes-prev.bytes) * 8 / dt / 1e6,
		FPS:      float64(now.frames-prev.frames) / dt,
		OpsPerS:  float64(now.ops-prev.ops) / dt,
		Errors:   now.errors,
		Stalls:   now.stalls,
		Interval: dt,
	}
	r.mu.Lock()
	w := r.window
	r.window = nil
	r.mu.Unlock()
	if len(w) > 0 {
		d := newDist(w)
		p.LatP50, p.LatP95 = d.P50, d.P95
	}
	if r.proc != nil {
		s := r.proc.Sample()
		p.CPU, p.HostCPU, p.RSSMB = s.CPU, s.HostCPU, s.RSSMB
	} else {
		p.HostCPU = hostCPU.sample()
	}
	r.mu.Lock()
	r.timeline = append(r.timeline, p)
	r.mu.Unlock()
	return p, now
}

// progressLine renders one live progress line.
func (r *Run) progressLine(p Point) string {
	label := r.FramesLabel
	if label == "" {
		label = "fps"
	}
	s := fmt.Sprintf("[%5.0fs] %s clients %d/%d  %7.2f Mbit/s  %6.0f %s  %6.1f op/s  err %d",
		p.T, r.Scenario, p.Active, r.Clients, p.Mbps, p.FPS, label, p.OpsPerS, p.Errors)
	if p.Stalls > 0 {
		s += fmt.Sprintf("  stalls %d", p.Stalls)
	}
	if p.LatP50 > 0 {
		s += fmt.Sprintf("  lat p50 %.0f ms p95 %.0f ms", p.LatP50, p.LatP95)
	}
	if r.proc != nil {
		s += fmt.Sprintf("  server cpu %.0f%% rss %.0f MB", p.CPU, p.RSSMB)
	}
	s += fmt.Sprintf("  host cpu %.0f%%", p.HostCPU)
	return s
}

// progress prints a line per second to w until stop is closed.
func (r *Run) progress(w io.Writer, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := r.snapshot()
	hostCPU.sample()
	for {
		select {
		case <-stop:
			p, _ := r.sample(prev)
			if w != nil && p.Interval > 0.2 {
				fmt.Fprintln(w, r.progressLine(p))
			}
			return
		case <-t.C:
			var p Point
			p, prev = r.sample(prev)
			if w != nil {
				fmt.Fprintln(w, r.progressLine(p))
			}
		}
	}
}

// Dist summarises samples in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

func newDist(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Dist{N: len(s), Min: s[0], Mean: sum / float64(len(s)), P50: q(0.5), P95: q(0.95), P99: q(0.99), Max: s[len(s)-1]}
}

// Report is a finished run, as printed, written to JSON and plotted.
type Report struct {
	Scenario    string    `json:"scenario"`
	Target      string    `json:"target"`
	Clients     int       `json:"clients"`
	StartedAt   time.Time `json:"started_at"`
	DurationS   float64   `json:"duration_s"`
	Bytes       int64     `json:"bytes"`
	Frames      int64     `json:"frames"`
	Ops         int64     `json:"ops"`
	Errors      int64     `json:"errors"`
	Retries     int64     `json:"retries"`
	Stalls      int64     `json:"stalls"`
	Packets     int64     `json:"packets"`
	Lost        int64     `json:"lost"`
	LostAudio   int64     `json:"lost_audio"`
	MbpsAvg     float64   `json:"mbps_avg"`
	FPSAvg      float64   `json:"fps_avg"`
	OpsPerSAvg  float64   `json:"ops_per_s_avg"`
	Latency     Dist      `json:"latency"`
	Display     Dist      `json:"display_latency"`
	EdgeDelay   Dist      `json:"edge_delay"`
	OpLatency   Dist      `json:"op_latency"`
	Server      *Server   `json:"server,omitempty"`
	HostCPUAvg  float64   `json:"host_cpu_avg_pct"`
	HostCPUMax  float64   `json:"host_cpu_max_pct"`
	Timeline    []Point   `json:"timeline"`
	ErrorSample []string  `json:"error_samples,omitempty"`
	Notes       []string  `json:"notes,omitempty"`
	Steady      *Steady   `json:"steady,omitempty"`
}

// Server summarises the sampled server process.
type Server struct {
	PID      int     `json:"pid"`
	Name     string  `json:"name"`
	CPUAvg   float64 `json:"cpu_avg_pct"`
	CPUMax   float64 `json:"cpu_max_pct"`
	RSSMaxMB float64 `json:"rss_max_mb"`
}

// Report builds the final report.
func (r *Run) Report() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	dur := time.Since(r.start).Seconds()
	rep := &Report{
		Scenario: r.Scenario, Target: r.Target, Clients: r.Clients,
		StartedAt: r.start.UTC(), DurationS: dur,
		Bytes: r.Bytes.Load(), Frames: r.Frames.Load(), Ops: r.Ops.Load(),
		Errors: r.Errors.Load(), Retries: r.Retries.Load(), Stalls: r.Stalls.Load(), Packets: r.Packets.Load(), Lost: r.Lost.Load(), LostAudio: r.LostAudio.Load(),
		Latency: newDist(r.latency), Display: newDist(r.display), EdgeDelay: newDist(r.edge), OpLatency: newDist(r.opLat),
		Timeline:    append([]Point(nil), r.timeline...),
		ErrorSample: append([]string(nil), r.errs...),
		Notes:       append([]string(nil), r.notes...),
		Steady:      r.steady,
	}
	if dur > 0 {
		rep.MbpsAvg = float64(rep.Bytes) * 8 / dur / 1e6
		rep.FPSAvg = float64(rep.Frames) / dur
		rep.OpsPerSAvg = float64(rep.Ops) / dur
	}
	var n int
	for _, p := range rep.Timeline {
		rep.HostCPUAvg += p.HostCPU
		rep.HostCPUMax = max(rep.HostCPUMax, p.HostCPU)
		n++
	}
	if n > 0 {
		rep.HostCPUAvg /= float64(n)
	}
	if r.proc != nil {
		s := &Server{PID: r.proc.PID, Name: r.proc.Name}
		var k int
		for _, p := range rep.Timeline {
			s.CPUAvg += p.CPU
			s.CPUMax = max(s.CPUMax, p.CPU)
			s.RSSMaxMB = max(s.RSSMaxMB, p.RSSMB)
			k++
		}
		if k > 0 {
			s.CPUAvg /= float64(k)
		}
		rep.Server = s
	}
	return rep
}

// errNotLive means a viewer found no stream yet; it polls again without
// counting an error.
var errNotLive = errors.New("stream not live yet")

// errStopped marks the normal end of a client when the run's context ends.
var errStopped = errors.New("stopped")
