package transcode

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/liveengine/liveengine/engine"
)

// ErrUnknownLadder is returned when a configuration names a ladder preset
// that is neither built in nor defined under transcode.presets.
var ErrUnknownLadder = errors.New("unknown ladder preset")

// ErrBadBitrate is returned by ParseBitrate for text that is not a bit rate.
var ErrBadBitrate = errors.New("invalid bit rate")

// Bitrate is a bit rate in bits per second. In YAML it is written as a
// number or with a k/M suffix ("2800k", "1.5M"), as the ffmpeg CLI takes it.
type Bitrate int

// ParseBitrate parses "2800k", "1.5M", "800000" into bits per second.
func ParseBitrate(s string) (Bitrate, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:n-1]
		case 'm', 'M':
			mult, t = 1e6, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q: %w", s, ErrBadBitrate)
	}
	v *= mult
	// 1 Gbit/s is far beyond any live rung; above it the text is a typo.
	if v < 1 || v > 1e9 {
		return 0, fmt.Errorf("%q: out of range: %w", s, ErrBadBitrate)
	}
	return Bitrate(math.Round(v)), nil
}

// String writes the rate the way ParseBitrate reads it.
func (b Bitrate) String() string {
	if b%1000 == 0 && b != 0 {
		return strconv.Itoa(int(b/1000)) + "k"
	}
	return strconv.Itoa(int(b))
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bitrate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBitrate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b Bitrate) MarshalYAML() (any, error) { return b.String(), nil }

// Rung is one encoded rendition of a ladder.
type Rung struct {
	// Name names the rendition: the stream "GROUP/NAME" in the engine.
	Name string `yaml:"name"`
	// Height is the picture height; rungs taller than the source are
	// skipped (no upscaling), and so are rungs the source's size or within
	// a few pixels of it (the source is that rendition).
	Height int `yaml:"height"`
	// Width is the picture width; 0 keeps the source's aspect ratio.
	Width int `yaml:"width,omitempty"`
	// Bitrate is the x264 target bit rate.
	Bitrate Bitrate `yaml:"bitrate"`
	// MaxRate caps the rate (VBV); 0 means Bitrate.
	MaxRate Bitrate `yaml:"maxrate,omitempty"`
	// BufSize is the VBV buffer; 0 means MaxRate.
	BufSize Bitrate `yaml:"bufsize,omitempty"`
	// Profile is the H.264 profile: baseline, main or high.
	Profile string `yaml:"profile"`
}

// Ladder is what the transcoder makes of one source stream. It is a value:
// the control plane may hand a different one per stream (SetLadder).
type Ladder struct {
	// Source lists the original stream in the multivariant playlist as the
	// top rendition. The transcoder never re-publishes it: it is already
	// the stream in the engine; the packager reads this flag.
	Source bool `yaml:"source"`
	// Rungs are the encoded renditions, best first. Under overload the
	// last rungs lose frames first.
	Rungs []Rung `yaml:"rungs"`
	// GOP is the longest keyframe interval, in frames. Keyframes are also
	// forced on every rung at each source keyframe, so all renditions cut
	// at the same PTS.
	GOP int `yaml:"gop"`
	// Preset and Tune are the x264 preset and tune.
	Preset string `yaml:"preset"`
	Tune   string `yaml:"tune"`
	// Threads is the x264 thread count per rung; 0 lets x264 choose.
	Threads int `yaml:"threads"`
}

// Encodes reports whether the ladder has rungs to encode.
func (l Ladder) Encodes() bool { return len(l.Rungs) > 0 }

var profiles = []string{"baseline", "main", "high"}

// Validate checks the ladder; errors name the key under prefix, e.g.
// "transcode.presets.default.rungs[1].bitrate".
func (l Ladder) Validate(prefix string) error {
	if !l.Source && len(l.Rungs) == 0 {
		return fmt.Errorf("%s: neither source nor any rung", prefix)
	}
	if l.Encodes() {
		if l.GOP < 1 || l.GOP > 1000 {
			return fmt.Errorf("%s.gop: %d is not within 1..1000 frames", prefix, l.GOP)
		}
		if l.Preset == "" {
			return fmt.Errorf("%s.preset: must not be empty", prefix)
		}
	}
	if l.Threads < 0 || l.Threads > 64 {
		return fmt.Errorf("%s.threads: %d is not within 0..64", prefix, l.Threads)
	}
	seen := map[string]bool{}
	for i, r := range l.Rungs {
		key := fmt.Sprintf("%s.rungs[%d]", prefix, i)
		switch {
		case !engine.ValidKey(r.Name) || strings.Contains(r.Name, "/"):
			return fmt.Errorf("%s.name: %q is not a valid rendition name", key, r.Name)
		case r.Name == "source":
			return fmt.Errorf("%s.name: \"source\" is the original stream; set %s.source instead", key, prefix)
		case seen[r.Name]:
			return fmt.Errorf("%s.name: %q appears twice", key, r.Name)
		case r.Height < 16 || r.Height > 4320 || r.Height%2 != 0:
			return fmt.Errorf("%s.height: %d is not an even number within 16..4320", key, r.Height)
		case r.Width != 0 && (r.Width < 16 || r.Width > 7680 || r.Width%2 != 0):
			return fmt.Errorf("%s.width: %d is not 0 or an even number within 16..7680", key, r.Width)
		case r.Bitrate <= 0:
			return fmt.Errorf("%s.bitrate: must be positive", key)
		case r.MaxRate < 0 || (r.MaxRate > 0 && r.MaxRate < r.Bitrate):
			return fmt.Errorf("%s.maxrate: %s is below bitrate %s", key, r.MaxRate, r.Bitrate)
		case r.BufSize < 0:
			return fmt.Errorf("%s.bufsize: must not be negative", key)
		case !slices.Contains(profiles, r.Profile):
			return fmt.Errorf("%s.profile: %q is not one of %v", key, r.Profile, profiles)
		}
		seen[r.Name] = true
	}
	return nil
}

// Built-in preset names.
const (
	// PresetDefault is source + 720p 2800k, 480p 1400k, 360p 800k.
	PresetDefault = "default"
	// PresetMobile favours weak links: source + 480p 1000k, 360p 600k, 240p 300k.
	PresetMobile = "mobile"
	// PresetPassthrough lists the source only: no encoding at all.
	PresetPassthrough = "passthrough"
)

func x264Ladder(rungs ...Rung) Ladder {
	return Ladder{Source: true, Rungs: rungs, GOP: 60, Preset: "veryfast", Tune: "zerolatency"}
}

// BuiltinPresets returns the ladder presets every configuration has; the
// same ones are written out, commented, in configs/ladders.yaml.
func BuiltinPresets() map[string]Ladder {
	return map[string]Ladder{
		PresetDefault: x264Ladder(
			Rung{Name: "720p", Height: 720, Bitrate: 2800_000, Profile: "high"},
			Rung{Name: "480p", Height: 480, Bitrate: 1400_000, Profile: "main"},
			Rung{Name: "360p", Height: 360, Bitrate: 800_000, Profile: "main"},
		),
		PresetMobile: x264Ladder(
			Rung{Name: "480p", Height: 480, Bitrate: 1000_000, Profile: "main"},
			Rung{Name: "360p", Height: 360, Bitrate: 600_000, Profile: "main"},
			Rung{Name: "240p", Height: 240, Bitrate: 300_000, Profile: "baseline"},
		),
		PresetPassthrough: {Source: true},
	}
}

// Config configures the transcoder; it is the "transcode" section of the
// configuration file.
type Config struct {
	// Enabled turns the ladder on for every source stream.
	Enabled bool `yaml:"enabled"`
	// Ladder names the preset used for streams the control plane did not
	// give a ladder of their own.
	Ladder string `yaml:"ladder"`
	// Presets adds ladder presets, or replaces built-in ones by name.
	Presets map[string]Ladder `yaml:"presets"`
	// ReaderQueue bounds the transcoder's reader queue on the source, in
	// units; when it overflows the engine drops to the next keyframe.
	ReaderQueue int `yaml:"reader_queue"`
	// RungQueue bounds the decoded frames waiting for each rung's encoder.
	// A full queue drops the frame for that rung (and counts it).
	RungQueue int `yaml:"rung_queue"`
	// DecodeThreads is the H.264 decoder's frame-thread count; 0 = auto.
	DecodeThreads int `yaml:"decode_threads"`
}

// DefaultConfig returns the transcoder defaults: on, default ladder.
func DefaultConfig() Config {
	return Config{
		Enabled:     true,
		Ladder:      PresetDefault,
		ReaderQueue: 2048,
		RungQueue:   8,
	}
}

// AllPresets returns the built-in presets merged with the configured ones.
func (c Config) AllPresets() map[string]Ladder {
	all := BuiltinPresets()
	for name, l := range c.Presets {
		all[name] = l
	}
	return all
}

// DefaultLadder returns the ladder named by c.Ladder.
func (c Config) DefaultLadder() (Ladder, error) {
	l, ok := c.AllPresets()[c.Ladder]
	if !ok {
		return Ladder{}, fmt.Errorf("transcode.ladder: %q: %w", c.Ladder, ErrUnknownLadder)
	}
	return l, nil
}

// Validate checks the configuration; errors name the key.
func (c Config) Validate() error {
	names := make([]string, 0, len(c.Presets))
	for name := range c.Presets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == "" {
			return fmt.Errorf("transcode.presets: empty preset name")
		}
		if err := c.Presets[name].Validate("transcode.presets." + name); err != nil {
			return err
		}
	}
	if _, err := c.DefaultLadder(); err != nil {
		return err
	}
	if c.ReaderQueue < 64 {
		return fmt.Errorf("transcode.reader_queue: %d is below 64", c.ReaderQueue)
	}
	if c.RungQueue < 2 || c.RungQueue > 256 {
		return fmt.Errorf("transcode.rung_queue: %d is not within 2..256", c.RungQueue)
	}
	if c.DecodeThreads < 0 || c.DecodeThreads > 64 {
		return fmt.Errorf("transcode.decode_threads: %d is not within 0..64", c.DecodeThreads)
	}
	return nil
}

// ParsePresets reads a ladder presets document (the format of
// configs/ladders.yaml: a top-level "presets" map) and validates every
// preset in it.
func ParsePresets(data []byte) (map[string]Ladder, error) {
	var doc struct {
		Presets map[string]Ladder `yaml:"presets"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("ladder presets: %w", err)
	}
	if len(doc.Presets) == 0 {
		return nil, errors.New("ladder presets: no \"presets\" map")
	}
	c := Config{Presets: doc.Presets}
	for name := range doc.Presets {
		c.Ladder = name
		break
	}
	c.ReaderQueue, c.RungQueue = 64, 2
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return doc.Presets, nil
}
