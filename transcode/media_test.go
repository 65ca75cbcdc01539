package transcode

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"

	"github.com/liveengine/liveengine/engine"
)

// writeTS muxes units of tracks into an MPEG-TS file that ffprobe and
// ffmpeg read, so tests check our output with the real tools.
func writeTS(t testing.TB, path string, tracks []*engine.Track, units []*engine.Unit) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tsTracks := make([]*mpegts.Track, len(tracks))
	for i, tr := range tracks {
		switch tr.Codec {
		case engine.CodecH264:
			tsTracks[i] = &mpegts.Track{Codec: &tscodecs.H264{}}
		case engine.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if err := conf.Unmarshal(tr.AACConfig); err != nil {
				t.Fatalf("AAC config %x: %v", tr.AACConfig, err)
			}
			tsTracks[i] = &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: conf}}
		case engine.CodecOpus:
			tsTracks[i] = &mpegts.Track{Codec: &tscodecs.Opus{Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(tr.Channels)}}}
		default:
			t.Fatalf("writeTS: codec %s", tr.Codec)
		}
	}
	w := &mpegts.Writer{W: f, Tracks: tsTracks}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	ts := func(d time.Duration) int64 { return int64(d) * 90000 / int64(time.Second) }
	for _, u := range units {
		tr := tsTracks[u.Track]
		var err error
		switch tracks[u.Track].Codec {
		case engine.CodecH264:
			err = w.WriteH264(tr, ts(u.PTS), ts(u.DTS), u.NALUs)
		case engine.CodecAAC:
			err = w.WriteMPEG4Audio(tr, ts(u.PTS), [][]byte{u.Payload})
		case engine.CodecOpus:
			err = w.WriteOpus(tr, ts(u.PTS), [][]byte{u.Payload})
		}
		if err != nil {
			t.Fatalf("writeTS %s: %v", path, err)
		}
	}
}

// decodePCM decodes the first audio stream of path with the ffmpeg CLI to
// mono 48 kHz samples.
func decodePCM(t testing.TB, path string) []int16 {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode %s: %v: %s", path, err, errb.String())
	}
	pcm := make([]int16, out.Len()/2)
	if err := binary.Read(&out, binary.LittleEndian, pcm); err != nil {
		t.Fatal(err)
	}
	return pcm
}

// dominantFrequency estimates the frequency of a pure tone from the zero
// crossings of its middle half (the ends hold encoder priming and fades),
// and its RMS level.
func dominantFrequency(pcm []int16, rate int) (hz, rms float64) {
	if len(pcm) < 8 {
		return 0, 0
	}
	mid := pcm[len(pcm)/4 : 3*len(pcm)/4]
	crossings := 0
	var sum float64
	for i := 1; i < len(mid); i++ {
		if (mid[i-1] < 0) != (mid[i] < 0) {
			crossings++
		}
		sum += float64(mid[i]) * float64(mid[i])
	}
	secs := float64(len(mid)) / float64(rate)
	return float64(crossings) / 2 / secs, math.Sqrt(sum / float64(len(mid)))
}

// ffprobeStreams returns ffprobe's JSON for the streams of path.
func ffprobe(t testing.TB, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("ffprobe", append([]string{"-v", "error", "-of", "json"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffprobe %v: %v: %s", args, err, errb.String())
	}
	return out.Bytes()
}

func runCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}
