package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	gortmp "github.com/yutopp/go-rtmp"
	rtmpmsg "github.com/yutopp/go-rtmp/message"

	"github.com/liveengine/liveengine/bench/stamp"
)

func init() {
	register("rtmp-publish", scenario{
		summary: "N RTMP publishers of a pre-encoded clip, paced in real time, every frame stamped with its send time",
		flags:   func(fs *flag.FlagSet) runner { return rtmpFlags(fs, "url", "n") },
	})
}

// rtmpPublish configures RTMP publishers.
type rtmpPublish struct {
	url     *string
	n       *int
	clip    *string
	name    *string
	noAudio *bool
	stagger *time.Duration

	app      string
	keys     []string
	clipData *Clip
}

func rtmpFlags(fs *flag.FlagSet, urlFlag, nFlag string) *rtmpPublish {
	return &rtmpPublish{
		url: fs.String(urlFlag, "rtmp://127.0.0.1:1935/live", "RTMP URL: rtmp://HOST:PORT/APP (keys NAME0..NAME{n-1}) or rtmp://HOST:PORT/APP/KEY with -n 1"),
		n:   fs.Int(nFlag, 1, "number of publishers"),
		clip: fs.String("clip", "", "pre-encoded .ts or .flv clip (H.264 without B-frames + AAC); empty: "+
			"generate the default 720p30 clip once with ffmpeg"),
		name:    fs.String("name", "bench", "stream key prefix"),
		noAudio: fs.Bool("no-audio", false, "publish video only"),
		stagger: fs.Duration("stagger", 200*time.Millisecond, "delay between publisher starts"),
	}
}

// streamURLs returns the app URL and the stream keys.
func (c *rtmpPublish) streamURLs() (string, []string, error) {
	u, err := url.Parse(*c.url)
	if err != nil || u.Scheme != "rtmp" || u.Host == "" {
		return "", nil, fmt.Errorf("%w: -url %q is not rtmp://HOST[:PORT]/APP", ErrUsage, *c.url)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" {
		return "", nil, fmt.Errorf("%w: -url %q has no app", ErrUsage, *c.url)
	}
	if *c.n < 1 {
		return "", nil, fmt.Errorf("%w: -n must be at least 1", ErrUsage)
	}
	app := fmt.Sprintf("rtmp://%s/%s", u.Host, parts[0])
	if len(parts) > 1 && *c.n == 1 {
		return app, []string{strings.Join(parts[1:], "/")}, nil
	}
	keys := make([]string, *c.n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", *c.name, i)
	}
	return app, keys, nil
}

func (c *rtmpPublish) loadClip() (*Clip, error) {
	path := *c.clip
	if path == "" {
		path = DefaultClipPath()
		if err := EnsureClip(path, 10); err != nil {
			return nil, err
		}
	}
	clip, err := LoadClip(path)
	if err != nil {
		return nil, err
	}
	if *c.noAudio {
		v := *clip
		v.AACConfig = nil
		v.Frames = nil
		for _, f := range clip.Frames {
			if f.Video {
				v.Frames = append(v.Frames, f)
			}
		}
		clip = &v
	}
	return clip, nil
}

func (c *rtmpPublish) prepare(context.Context) error {
	var err error
	if c.app, c.keys, err = c.streamURLs(); err != nil {
		return err
	}
	c.clipData, err = c.loadClip()
	return err
}

func (c *rtmpPublish) run(ctx context.Context, r *Run) error {
	app, keys, clip := c.app, c.keys, c.clipData
	var wg sync.WaitGroup
	for i, key := range keys {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*c.stagger):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(ctx, r, func() error { return PublishRTMP(ctx, app, key, clip, r) })
		}()
	}
	wg.Wait()
	return nil
}

// runClients starts n copies of client, stagger apart, each restarted by
// retry until ctx ends, and waits for them.
func runClients(ctx context.Context, r *Run, n int, stagger time.Duration, client func() error) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if i > 0 && stagger > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(stagger):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(ctx, r, client)
		}()
	}
	wg.Wait()
}

// retry runs a client until ctx ends, counting each failure and starting
// again after a second, like a real encoder or player would.
func retry(ctx context.Context, r *Run, client func() error) {
	for ctx.Err() == nil {
		err := client()
		if ctx.Err() != nil {
			return
		}
		wait := time.Second
		if errors.Is(err, errNotLive) {
			// The stream is not there yet (publisher still starting): not
			// an error, just poll again soon.
			wait = 250 * time.Millisecond
		} else {
			r.Error(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

var quietLogrus = func() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}()

// PublishRTMP publishes clip to appURL/key in real time, looping, until ctx
// ends. Every video frame carries a stamp SEI with its send time. r counts
// bytes and frames (it may be nil).
func PublishRTMP(ctx context.Context, appURL, key string, clip *Clip, r *Run) error {
	u, err := url.Parse(appURL)
	if err != nil {
		return fmt.Errorf("rtmp %s: %w", appURL, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "1935")
	}
	app := strings.Trim(u.Path, "/")
	var d net.Dialer
	d.Timeout = 5 * time.Second
	conn, err := gortmp.DialWithDialer(&d, "rtmp", host, &gortmp.ConnConfig{Logger: quietLogrus})
	if err != nil {
		return fmt.Errorf("rtmp dial %s: %w", host, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := conn.Connect(&rtmpmsg.NetConnectionConnect{Command: rtmpmsg.NetConnectionConnectCommand{
		App: app, Type: "nonprivate", FlashVer: "FMLE/3.0 (compatible; liveengine-bench)", TCURL: appURL,
	}}); err != nil {
		return fmt.Errorf("rtmp connect %s: %w", appURL, err)
	}
	st, err := conn.CreateStream(nil, 65536)
	if err != nil {
		return fmt.Errorf("rtmp createStream %s: %w", appURL, err)
	}
	defer st.Close()
	if err := st.Publish(&rtmpmsg.NetStreamPublish{PublishingName: key, PublishingType: "live"}); err != nil {
		return fmt.Errorf("rtmp publish %s/%s: %w", appURL, key, err)
	}
	if err := writeMetadata(st, clip); err != nil {
		return fmt.Errorf("rtmp metadata %s/%s: %w", appURL, key, err)
	}
	if err := st.Write(6, 0, &rtmpmsg.VideoMessage{Payload: bytes.NewReader(avcSequenceHeader(clip))}); err != nil {
		return fmt.Errorf("rtmp video header %s/%s: %w", appURL, key, err)
	}
	if clip.AACConfig != nil {
		if err := st.Write(4, 0, &rtmpmsg.AudioMessage{Payload: bytes.NewReader(append([]byte{0xaf, 0}, clip.AACConfig...))}); err != nil {
			return fmt.Errorf("rtmp audio header %s/%s: %w", appURL, key, err)
		}
	}
	if r != nil {
		r.Active.Add(1)
		defer r.Active.Add(-1)
	}
	var buf []byte
	start := time.Now()
	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * clip.Duration
		for i := range clip.Frames {
			f := &clip.Frames[i]
			at := offset + f.DTS
			if wait := time.Until(start.Add(at)); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ts := uint32(at / time.Millisecond)
			if f.Video {
				buf = videoTag(buf[:0], f, time.Now())
				err = st.Write(6, ts, &rtmpmsg.VideoMessage{Payload: bytes.NewReader(buf)})
			} else {
				buf = append(append(buf[:0], 0xaf, 1), f.AU...)
				err = st.Write(4, ts, &rtmpmsg.AudioMessage{Payload: bytes.NewReader(buf)})
			}
			if err != nil {
				return fmt.Errorf("rtmp send %s/%s: %w", appURL, key, err)
			}
			if r != nil {
				r.Bytes.Add(int64(len(buf)))
				if f.Video {
					r.Frames.Add(1)
				}
			}
		}
	}
}

// videoTag builds an FLV AVC NALU tag body with a stamp inserted before the
// first slice: the stamp is the send time, the start of glass-to-glass.
func videoTag(b []byte, f *Frame, now time.Time) []byte {
	kind := byte(0x27)
	if f.Key {
		kind = 0x17
	}
	cts := int32((f.PTS - f.DTS) / time.Millisecond)
	b = append(b, kind, 1, byte(cts>>16), byte(cts>>8), byte(cts))
	for _, n := range stamp.Insert(f.NALUs, stamp.Encode(now)) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
		b = append(b, n...)
	}
	return b
}

func avcSequenceHeader(c *Clip) []byte {
	b := []byte{0x17, 0, 0, 0, 0, 1, c.SPS[1], c.SPS[2], c.SPS[3], 0xff, 0xe1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.SPS)))
	b = append(b, c.SPS...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.PPS)))
	return append(b, c.PPS...)
}

func writeMetadata(st *gortmp.Stream, c *Clip) error {
	var body bytes.Buffer
	enc := rtmpmsg.NewAMFEncoder(&body, rtmpmsg.EncodingTypeAMF0)
	meta := map[string]interface{}{
		"width": float64(c.Width), "height": float64(c.Height), "framerate": c.FPS,
		"videocodecid": float64(7), "encoder": "liveengine-bench",
	}
	if c.AACConfig != nil {
		meta["audiocodecid"] = float64(10)
		meta["audiosamplerate"] = float64(c.SampleRate)
		meta["stereo"] = c.Channels == 2
	}
	if err := enc.Encode("onMetaData"); err != nil {
		return err
	}
	if err := enc.Encode(meta); err != nil {
		return err
	}
	return st.Write(4, 0, &rtmpmsg.DataMessage{Name: "@setDataFrame", Encoding: rtmpmsg.EncodingTypeAMF0, Body: &body})
}
