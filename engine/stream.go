package engine

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one live path: a set of tracks, one publisher and many readers.
// The publisher's Write fans each unit out to every reader's bounded queue
// without blocking; a reader that falls behind drops units until the next
// keyframe.
type Stream struct {
	id        string
	group     string
	rendition string
	protocol  string
	tracks    []*Track
	videoIdx  int // index of the first video track, -1 if none
	started   time.Time
	log       *slog.Logger
	eng       *Engine
	maxGOP    int

	mu      sync.Mutex
	readers []*Reader
	gop     []*Unit // units since the last video keyframe, for new readers
	closed  bool
	done    chan struct{}

	extViewers atomic.Int64

	unitsIn   atomic.Uint64
	bytesIn   atomic.Uint64
	framesIn  atomic.Uint64
	droppedBy atomic.Uint64
}

// ID returns the stream's id: the public id of a source stream, or
// "GROUP/RENDITION" for a rendition produced by the transcoder.
func (s *Stream) ID() string { return s.id }

// Group returns the id of the source stream this stream belongs to.
func (s *Stream) Group() string { return s.group }

// Rendition returns the rendition name: "source" for what the publisher sent.
func (s *Stream) Rendition() string { return s.rendition }

// Protocol returns the protocol of the publisher ("rtmp", "whip", "rtsp",
// "transcode").
func (s *Stream) Protocol() string { return s.protocol }

// Tracks returns the stream's tracks; the slice must not be modified.
func (s *Stream) Tracks() []*Track { return s.tracks }

// VideoTrack returns the index of the first video track, or -1.
func (s *Stream) VideoTrack() int { return s.videoIdx }

// Started returns when the stream went live.
func (s *Stream) Started() time.Time { return s.started }

// Done is closed when the stream ends.
func (s *Stream) Done() <-chan struct{} { return s.done }

// BytesIn returns the payload bytes written by the publisher so far.
func (s *Stream) BytesIn() uint64 { return s.bytesIn.Load() }

// FramesIn returns the video frames written so far.
func (s *Stream) FramesIn() uint64 { return s.framesIn.Load() }

// ReaderCount returns the readers of kind ("" counts all).
func (s *Stream) ReaderCount(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == "" {
		return len(s.readers)
	}
	n := 0
	for _, r := range s.readers {
		if r.kind == kind {
			n++
		}
	}
	return n
}

// isKey reports whether u is a point where a reader can start decoding.
func (s *Stream) isKey(u *Unit) bool {
	if s.videoIdx < 0 {
		return true
	}
	return u.Key && u.Track == s.videoIdx
}

// write fans u out. It never blocks on a reader and, in steady state,
// allocates nothing.
func (s *Stream) write(u *Unit) {
	size := u.Size()
	s.unitsIn.Add(1)
	s.bytesIn.Add(uint64(size))
	if u.Track == s.videoIdx {
		s.framesIn.Add(1)
	}
	key := s.isKey(u)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.videoIdx >= 0 {
		if key {
			clear(s.gop)
			s.gop = s.gop[:0]
		}
		if len(s.gop) > 0 || key {
			if len(s.gop) < s.maxGOP {
				s.gop = append(s.gop, u)
			}
		}
	}
	for _, r := range s.readers {
		r.offer(u, key, size)
	}
	s.mu.Unlock()
}

// ReaderOptions configures a reader.
type ReaderOptions struct {
	// Name identifies the reader in logs ("hls", "whep 10.0.0.2:5000").
	Name string
	// Kind labels the reader in metrics: "hls", "webrtc", "transcode",
	// "rtsp", "record", "bench". Viewers are counted from kinds that
	// Viewer reports true for.
	Kind string
	// Viewer marks readers that are people watching, counted in Stats.
	Viewer bool
	// QueueLen bounds the reader's queue; 0 takes the engine default.
	QueueLen int
	// SkipGOPCache starts the reader at the next keyframe instead of the
	// last one.
	SkipGOPCache bool
}

// Reader receives a stream's units on its own goroutine.
type Reader struct {
	stream *Stream
	name   string
	kind   string
	viewer bool
	fn     func(*Unit)
	onEnd  func()
	queue  chan *Unit
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	kstats *kindStats

	// waitKey is set when the queue overflowed: units are dropped until
	// the next keyframe. Guarded by stream.mu.
	waitKey      bool
	dropEpisodes uint64

	unitsOut atomic.Uint64
	bytesOut atomic.Uint64
	dropped  atomic.Uint64
}

// offer queues u for the reader or drops it. Called with stream.mu held.
func (r *Reader) offer(u *Unit, key bool, size int) {
	if r.waitKey {
		if !key {
			// A reader that joined before any keyframe simply waits for
			// one; only units lost after an overflow count as drops.
			if r.dropEpisodes > 0 {
				r.drop()
			}
			return
		}
		r.waitKey = false
		if r.dropEpisodes > 0 {
			r.stream.log.Info("reader resumed at keyframe", "reader", r.name, "kind", r.kind, "dropped", r.dropped.Load())
		}
	}
	select {
	case r.queue <- u:
	default:
		r.waitKey = true
		r.dropEpisodes++
		r.drop()
		r.stream.log.Warn("reader too slow, dropping to next keyframe", "reader", r.name, "kind", r.kind, "episode", r.dropEpisodes)
	}
}

func (r *Reader) drop() {
	r.dropped.Add(1)
	r.kstats.dropped.Add(1)
	r.stream.droppedBy.Add(1)
}

func (r *Reader) run() {
	defer close(r.done)
	defer func() {
		if r.onEnd != nil {
			r.onEnd()
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		case u, ok := <-r.queue:
			if !ok {
				return
			}
			r.fn(u)
			n := uint64(u.Size())
			r.unitsOut.Add(1)
			r.bytesOut.Add(n)
			r.kstats.units.Add(1)
			r.kstats.bytes.Add(n)
		}
	}
}

// Name returns the reader's name.
func (r *Reader) Name() string { return r.name }

// Stream returns the stream the reader reads.
func (r *Reader) Stream() *Stream { return r.stream }

// Dropped returns how many units this reader lost because it was too slow.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Done is closed once the reader's goroutine has returned, either because
// the reader was closed or because the stream ended and the queue drained.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Close detaches the reader; queued units are discarded. It does not wait:
// use Done for that.
func (r *Reader) Close() {
	r.once.Do(func() {
		r.stream.removeReader(r)
		close(r.stop)
	})
}

// AddReader attaches a reader that receives units through fn, called on the
// reader's own goroutine. The reader starts with the stream's cached GOP so
// it can decode at once. onEnd, if not nil, runs on that goroutine when the
// reader stops.
func (s *Stream) AddReader(opts ReaderOptions, fn func(*Unit), onEnd func()) (*Reader, error) {
	qlen := opts.QueueLen
	if qlen <= 0 {
		qlen = s.eng.conf.ReaderQueueLen
	}
	r := &Reader{
		stream: s,
		name:   opts.Name,
		kind:   opts.Kind,
		viewer: opts.Viewer,
		fn:     fn,
		onEnd:  onEnd,
		queue:  make(chan *Unit, qlen),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		kstats: s.eng.metrics.kind(opts.Kind),
	}
	if r.name == "" {
		r.name = opts.Kind
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrStreamNotFound
	}
	if opts.SkipGOPCache || s.videoIdx < 0 {
		r.waitKey = s.videoIdx >= 0
	} else if len(s.gop) == 0 {
		r.waitKey = true
	} else {
		for _, u := range s.gop {
			select {
			case r.queue <- u:
			default:
				// The cached GOP is longer than the queue: start at the
				// next keyframe instead of a broken GOP.
				r.waitKey = true
			}
			if r.waitKey {
				// Drain what was queued; it is an incomplete GOP.
				for len(r.queue) > 0 {
					<-r.queue
				}
				break
			}
		}
	}
	s.readers = append(s.readers, r)
	r.kstats.readers.Add(1)
	s.mu.Unlock()
	go r.run()
	return r, nil
}

func (s *Stream) removeReader(r *Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.readers {
		if x == r {
			s.readers = append(s.readers[:i], s.readers[i+1:]...)
			s.readers[len(s.readers):cap(s.readers)][0] = nil
			r.kstats.readers.Add(-1)
			return
		}
	}
}

// end closes the stream: readers drain their queues and stop.
func (s *Stream) end() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	readers := s.readers
	s.readers = nil
	clear(s.gop)
	s.gop = nil
	for _, r := range readers {
		r.kstats.readers.Add(-1)
		close(r.queue)
	}
	close(s.done)
	s.mu.Unlock()
}

// AddViewers adjusts the count of viewers that are not readers of their own,
// such as HLS sessions served from one shared muxer.
func (s *Stream) AddViewers(delta int) { s.extViewers.Add(int64(delta)) }

// Viewers returns the people watching: readers marked as viewers plus the
// viewers added with AddViewers.
func (s *Stream) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int(s.extViewers.Load())
	for _, r := range s.readers {
		if r.viewer {
			n++
		}
	}
	return n
}
