package bench

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"sync"
)

// embeddedPublisher lets a viewer scenario publish its own stamped stream
// (-publish rtmp://HOST/APP/KEY), so one command measures glass to glass.
// Its bytes and frames are not counted in the viewers' figures.
type embeddedPublisher struct {
	url  *string
	clip *string

	app, key string
	c        *Clip
	wg       sync.WaitGroup
}

func publishFlag(fs *flag.FlagSet) *embeddedPublisher {
	return &embeddedPublisher{
		url:  fs.String("publish", "", "also publish a stamped clip to this RTMP URL (rtmp://HOST:PORT/APP/KEY) during the run"),
		clip: fs.String("publish-clip", "", "clip for -publish (default: the generated 720p30 clip)"),
	}
}

func (p *embeddedPublisher) prepare() error {
	if *p.url == "" {
		return nil
	}
	u, err := url.Parse(*p.url)
	if err != nil || u.Scheme != "rtmp" {
		return fmt.Errorf("%w: -publish %q is not rtmp://HOST:PORT/APP/KEY", ErrUsage, *p.url)
	}
	parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("%w: -publish %q needs APP/KEY", ErrUsage, *p.url)
	}
	p.app, p.key = fmt.Sprintf("rtmp://%s/%s", u.Host, parts[0]), parts[1]
	path := *p.clip
	if path == "" {
		path = DefaultClipPath()
		if err := EnsureClip(path, 10); err != nil {
			return err
		}
	}
	p.c, err = LoadClip(path)
	return err
}

func (p *embeddedPublisher) start(ctx context.Context, r *Run) {
	if p.c == nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		quiet := NewRun("publish", p.app, 1)
		retry(ctx, r, func() error { return PublishRTMP(ctx, p.app, p.key, p.c, quiet) })
	}()
}

func (p *embeddedPublisher) wait() { p.wg.Wait() }
