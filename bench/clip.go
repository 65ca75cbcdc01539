package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

// ErrBadClip means a clip file could not be read as H.264 (+ AAC) media.
var ErrBadClip = errors.New("bench: unusable clip")

// Frame is one access unit of a clip: a video picture (NALUs) or an AAC
// frame (AU). Times are relative to the clip's start.
type Frame struct {
	Video    bool
	Key      bool
	DTS, PTS time.Duration
	NALUs    [][]byte
	AU       []byte
}

// Clip is a pre-encoded clip held in memory, shared read-only by every
// publisher of a run so the load generator never re-encodes.
type Clip struct {
	SPS, PPS   []byte
	Width      int
	Height     int
	FPS        float64
	AACConfig  []byte // AudioSpecificConfig; nil without audio
	SampleRate int
	Channels   int
	Frames     []Frame // in decoding order
	Duration   time.Duration
}

// ClipFFmpegArgs are the ffmpeg arguments of the default bench clip: 720p30
// testsrc2 with a sine tone, x264 veryfast, GOP 60, no B-frames, AAC.
func ClipFFmpegArgs(seconds int) []string {
	return []string{
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", fmt.Sprint(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
		"-pix_fmt", "yuv420p", "-bf", "0", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
		"-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k",
		"-c:a", "aac", "-b:a", "128k", "-ac", "2",
	}
}

// EnsureClip generates the default clip at path with the ffmpeg CLI when no
// file is there; the format follows the extension (.ts or .flv).
func EnsureClip(path string, seconds int) error {
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("clip %s: %w", path, err)
	}
	format := "mpegts"
	if strings.HasSuffix(path, ".flv") {
		format = "flv"
	}
	tmp := path + ".tmp"
	args := append([]string{"-y", "-hide_banner", "-loglevel", "error"}, ClipFFmpegArgs(seconds)...)
	args = append(args, "-f", format, tmp)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("clip %s: ffmpeg: %w: %s", path, err, bytes.TrimSpace(out))
	}
	// Rename is atomic: a concurrent run sees a whole clip or none.
	return os.Rename(tmp, path)
}

// DefaultClipPath is where the default clip is cached.
func DefaultClipPath() string {
	return filepath.Join(os.TempDir(), "liveengine-bench", "clip-720p30-g60.ts")
}

// LoadClip reads an MPEG-TS (.ts) or FLV (.flv) clip into memory.
func LoadClip(path string) (*Clip, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	var c *Clip
	if strings.HasSuffix(path, ".flv") || bytes.HasPrefix(data, []byte("FLV")) {
		c, err = parseFLV(data)
	} else {
		c, err = parseTS(data)
	}
	if err != nil {
		return nil, fmt.Errorf("clip %s: %w", path, err)
	}
	if c.SPS == nil || c.PPS == nil {
		return nil, fmt.Errorf("clip %s: %w: no H.264 SPS/PPS", path, ErrBadClip)
	}
	c.finish()
	return c, nil
}

func (c *Clip) setSPS(n []byte) {
	if c.SPS != nil {
		return
	}
	c.SPS = append([]byte(nil), n...)
	var sps h264.SPS
	if sps.Unmarshal(n) == nil {
		c.Width, c.Height, c.FPS = sps.Width(), sps.Height(), sps.FPS()
	}
}

// videoFrame builds a frame from an access unit, keeping parameter sets in
// band (servers and decoders that join late need them) and dropping AUDs.
func (c *Clip) videoFrame(dts, pts time.Duration, au [][]byte) Frame {
	f := Frame{Video: true, DTS: dts, PTS: pts}
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			c.setSPS(n)
		case h264.NALUTypePPS:
			if c.PPS == nil {
				c.PPS = append([]byte(nil), n...)
			}
		case h264.NALUTypeIDR:
			f.Key = true
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		}
		f.NALUs = append(f.NALUs, append([]byte(nil), n...))
	}
	return f
}

// finish shifts times so the first DTS is zero and computes the duration.
func (c *Clip) finish() {
	if len(c.Frames) == 0 {
		return
	}
	min := c.Frames[0].DTS
	for _, f := range c.Frames {
		min = minDur(min, f.DTS)
	}
	var end time.Duration
	for i := range c.Frames {
		c.Frames[i].DTS -= min
		c.Frames[i].PTS -= min
		end = max(end, c.Frames[i].PTS)
	}
	if c.FPS > 0 {
		end += time.Duration(float64(time.Second) / c.FPS)
	}
	c.Duration = end
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func parseTS(data []byte) (*Clip, error) {
	r := &mpegts.Reader{R: bytes.NewReader(data)}
	if err := r.Initialize(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadClip, err)
	}
	c := &Clip{}
	ts := func(v int64) time.Duration { return time.Duration(v) * time.Second / 90000 }
	for _, tr := range r.Tracks() {
		switch codec := tr.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				c.Frames = append(c.Frames, c.videoFrame(ts(dts), ts(pts), au))
				return nil
			})
		case *tscodecs.MPEG4Audio:
			cfg, err := codec.Config.Marshal()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBadClip, err)
			}
			c.AACConfig, c.SampleRate, c.Channels = cfg, codec.Config.SampleRate, int(codec.Config.ChannelConfig)
			sr := int64(codec.Config.SampleRate)
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					p := ts(pts + int64(i)*1024*90000/sr)
					c.Frames = append(c.Frames, Frame{DTS: p, PTS: p, Key: true, AU: append([]byte(nil), au...)})
				}
				return nil
			})
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%w: %w", ErrBadClip, err)
		}
	}
	return c, nil
}

// parseFLV reads FLV tags: AVC sequence headers and NALUs, AAC config and
// raw frames. Other tags are skipped.
func parseFLV(data []byte) (*Clip, error) {
	if len(data) < 13 || string(data[:3]) != "FLV" {
		return nil, fmt.Errorf("%w: not an FLV file", ErrBadClip)
	}
	off := int(binary.BigEndian.Uint32(data[5:9])) + 4
	c := &Clip{}
	for off+11 <= len(data) {
		typ := data[off] & 0x1f
		size := int(data[off+1])<<16 | int(data[off+2])<<8 | int(data[off+3])
		tsms := int64(data[off+4])<<16 | int64(data[off+5])<<8 | int64(data[off+6]) | int64(data[off+7])<<24
		body := off + 11
		if body+size > len(data) {
			break // truncated last tag: keep what came before
		}
		b := data[body : body+size]
		off = body + size + 4
		dts := time.Duration(tsms) * time.Millisecond
		switch typ {
		case 9:
			if len(b) < 5 || b[0]&0x0f != 7 {
				continue
			}
			cts := int32(uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])) << 8 >> 8
			switch b[1] {
			case 0:
				if err := c.avcConfig(b[5:]); err != nil {
					return nil, err
				}
			case 1:
				var au h264.AVCC
				if err := au.Unmarshal(b[5:]); err != nil {
					return nil, fmt.Errorf("%w: video tag at %s: %w", ErrBadClip, dts, err)
				}
				c.Frames = append(c.Frames, c.videoFrame(dts, dts+time.Duration(cts)*time.Millisecond, au))
			}
		case 8:
			if len(b) < 2 || b[0]>>4 != 10 {
				continue
			}
			if b[1] == 0 {
				var conf mpeg4audio.AudioSpecificConfig
				if err := conf.Unmarshal(b[2:]); err != nil {
					// ffmpeg remuxing from MPEG-TS writes an empty header
					// before the real one; a later one may still come.
					continue
				}
				c.AACConfig = append([]byte(nil), b[2:]...)
				c.SampleRate, c.Channels = conf.SampleRate, int(conf.ChannelConfig)
				continue
			}
			if c.AACConfig != nil {
				c.Frames = append(c.Frames, Frame{DTS: dts, PTS: dts, Key: true, AU: append([]byte(nil), b[2:]...)})
			}
		}
	}
	return c, nil
}

func (c *Clip) avcConfig(b []byte) error {
	// AVCDecoderConfigurationRecord: 5 fixed bytes, SPS count, SPS list,
	// PPS count, PPS list.
	if len(b) < 7 {
		return fmt.Errorf("%w: short AVC config", ErrBadClip)
	}
	p := 5
	n := int(b[p] & 0x1f)
	p++
	for i := 0; i < n; i++ {
		if p+2 > len(b) {
			return fmt.Errorf("%w: short AVC config", ErrBadClip)
		}
		l := int(binary.BigEndian.Uint16(b[p:]))
		if p+2+l > len(b) {
			return fmt.Errorf("%w: short AVC config", ErrBadClip)
		}
		c.setSPS(b[p+2 : p+2+l])
		p += 2 + l
	}
	if p >= len(b) {
		return fmt.Errorf("%w: short AVC config", ErrBadClip)
	}
	n = int(b[p])
	p++
	for i := 0; i < n; i++ {
		if p+2 > len(b) {
			return fmt.Errorf("%w: short AVC config", ErrBadClip)
		}
		l := int(binary.BigEndian.Uint16(b[p:]))
		if p+2+l > len(b) {
			return fmt.Errorf("%w: short AVC config", ErrBadClip)
		}
		if c.PPS == nil {
			c.PPS = append([]byte(nil), b[p+2:p+2+l]...)
		}
		p += 2 + l
	}
	return nil
}
