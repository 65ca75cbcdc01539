package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveengine/liveengine/bench/stamp"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// TestLoadClipFLVAndTS reads the same ffmpeg-made media as FLV and as
// MPEG-TS and checks both give the parameter sets, keyframes and AAC.
func TestLoadClipFLVAndTS(t *testing.T) {
	spec := enginetest.ClipSpec{Width: 320, Height: 240, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "300k"}
	ts := enginetest.Clip(t, spec)
	flv := filepath.Join(t.TempDir(), "clip.flv")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", ts, "-c", "copy", "-f", "flv", flv).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	for _, path := range []string{ts, flv} {
		c, err := LoadClip(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var video, audio, keys int
		for _, f := range c.Frames {
			if f.Video {
				video++
				if f.Key {
					keys++
				}
			} else {
				audio++
			}
		}
		if c.Width != 320 || c.Height != 240 || video < 55 || keys < 2 || audio < 80 || c.AACConfig == nil {
			t.Errorf("%s: %dx%d, %d video (%d key), %d audio, aac %x", filepath.Ext(path), c.Width, c.Height, video, keys, audio, c.AACConfig)
		}
		if c.Duration < 1900*time.Millisecond || c.Duration > 2200*time.Millisecond {
			t.Errorf("%s: duration %v", filepath.Ext(path), c.Duration)
		}
		// The RTMP tag of a frame carries the stamp before the slices.
		var f *Frame
		for i := range c.Frames {
			if c.Frames[i].Video {
				f = &c.Frames[i]
				break
			}
		}
		tag := videoTag(nil, f, time.Unix(1764100000, 5))
		var nalus [][]byte
		for b := tag[5:]; len(b) >= 4; {
			n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			nalus = append(nalus, b[4:4+n])
			b = b[4+n:]
		}
		if got, err := stamp.Find(nalus); err != nil || !got.Equal(time.Unix(1764100000, 5)) {
			t.Errorf("%s: stamp in tag: %v, %v", filepath.Ext(path), got, err)
		}
	}
}

func TestLoadClipBad(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty.flv": nil,
		"junk.ts":   []byte("not a transport stream at all"),
		"short.flv": []byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\x00\x00\x10"),
	} {
		p := filepath.Join(dir, name)
		if err := writeFile(p, data); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadClip(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParseFLV(f *testing.F) {
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"))
	// A tag header announcing an AVC sequence header with a truncated body.
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x17\x00\x00\x00\x00\x01\x64\x00"))
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x08\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\xaf\x00\x11\x90\x00\x00\x00\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseFLV(b)
		if err == nil && c == nil {
			t.Fatal("nil clip without error")
		}
	})
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }
