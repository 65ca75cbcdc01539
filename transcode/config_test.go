package transcode

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestLaddersFile keeps configs/ladders.yaml and the built-in presets equal.
func TestLaddersFile(t *testing.T) {
	data, err := os.ReadFile("../configs/ladders.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePresets(data)
	if err != nil {
		t.Fatal(err)
	}
	want := BuiltinPresets()
	for name, l := range got {
		if len(l.Rungs) == 0 {
			l.Rungs = nil
		}
		got[name] = l
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("configs/ladders.yaml differs from BuiltinPresets:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseBitrate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bitrate
	}{{"2800k", 2800000}, {"1.5M", 1500000}, {"800000", 800000}, {" 96K ", 96000}} {
		got, err := ParseBitrate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "k", "fast", "-3k", "0", "NaN", "1e12", "Infk"} {
		if _, err := ParseBitrate(bad); !errors.Is(err, ErrBadBitrate) {
			t.Errorf("ParseBitrate(%q): got %v, want ErrBadBitrate", bad, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key    string
		change func(*Config)
	}{
		{"transcode.ladder", func(c *Config) { c.Ladder = "nope" }},
		{"transcode.reader_queue", func(c *Config) { c.ReaderQueue = 1 }},
		{"transcode.rung_queue", func(c *Config) { c.RungQueue = 0 }},
		{"transcode.presets.x.rungs[0].bitrate", func(c *Config) {
			c.Presets = map[string]Ladder{"x": x264Ladder(Rung{Name: "a", Height: 360, Profile: "main"})}
		}},
		{"transcode.presets.x.rungs[1].name", func(c *Config) {
			c.Presets = map[string]Ladder{"x": x264Ladder(Rung{Name: "a", Height: 360, Bitrate: 1, Profile: "main"}, Rung{Name: "a", Height: 240, Bitrate: 1, Profile: "main"})}
		}},
		{"transcode.presets.x.rungs[0].height", func(c *Config) {
			c.Presets = map[string]Ladder{"x": x264Ladder(Rung{Name: "a", Height: 361, Bitrate: 1, Profile: "main"})}
		}},
		{"transcode.presets.x.rungs[0].profile", func(c *Config) {
			c.Presets = map[string]Ladder{"x": x264Ladder(Rung{Name: "a", Height: 360, Bitrate: 1, Profile: "high10"})}
		}},
		{"transcode.presets.x.gop", func(c *Config) {
			l := x264Ladder(Rung{Name: "a", Height: 360, Bitrate: 1, Profile: "main"})
			l.GOP = 0
			c.Presets = map[string]Ladder{"x": l}
		}},
		{"transcode.presets.x.rungs[0].name", func(c *Config) {
			c.Presets = map[string]Ladder{"x": x264Ladder(Rung{Name: "source", Height: 360, Bitrate: 1, Profile: "main"})}
		}},
	} {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%s: got %v", tc.key, err)
		}
	}
}

func TestParsePresetsErrors(t *testing.T) {
	for _, doc := range []string{
		"",
		"presets: 3",
		"presets:\n  a: {source: false}",
		"presets:\n  a: {gop: 60, preset: veryfast, rungs: [{name: x, height: 360, bitrate: fast, profile: main}]}",
	} {
		if _, err := ParsePresets([]byte(doc)); err == nil {
			t.Errorf("ParsePresets(%q): no error", doc)
		}
	}
}

func FuzzParseBitrate(f *testing.F) {
	for _, s := range []string{"2800k", "1.5M", "800000", "", "k", "-1", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBitrate(s)
		if err != nil {
			return
		}
		if b < 1 || b > 1e9 {
			t.Fatalf("ParseBitrate(%q) = %d out of range", s, b)
		}
		again, err := ParseBitrate(b.String())
		if err != nil || again != b {
			t.Fatalf("round trip of %q: %d -> %q -> %d, %v", s, b, b.String(), again, err)
		}
	})
}

func FuzzParsePresets(f *testing.F) {
	data, err := os.ReadFile("../configs/ladders.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("presets:\n  a: {source: true}"))
	f.Add([]byte("presets: [1, 2]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		presets, err := ParsePresets(data)
		if err != nil {
			return
		}
		for name, l := range presets {
			if err := l.Validate(name); err != nil {
				t.Fatalf("ParsePresets accepted invalid %q: %v", name, err)
			}
		}
	})
}
