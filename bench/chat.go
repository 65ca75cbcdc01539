package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

func init() {
	register("chat", scenario{
		summary: "K WebSocket clients in one room, S of them signed in and commenting: broadcast latency and delivery rate",
		flags: func(fs *flag.FlagSet) runner {
			return &chatStorm{
				api:     fs.String("api", "http://127.0.0.1:8080", "control API base URL"),
				n:       fs.Int("n", 50, "WebSocket clients in the room (anonymous readers plus the senders)"),
				senders: fs.Int("senders", 4, "signed-in clients that comment (registered at start; registration is rate limited)"),
				rate:    fs.Float64("rate", 1, "comments per second per sender (the API limits each user, 2/s by default)"),
				room:    fs.String("room", "", "stream id of the room; empty: register a streamer and create a stream"),
			}
		},
		target:      func(fs *flag.FlagSet) string { return flagString(fs, "api") },
		framesLabel: "sent/s",
	})
}

type chatStorm struct {
	api     *string
	n       *int
	senders *int
	rate    *float64
	room    *string

	hc     *http.Client
	tokens []string
	roomID string
	wsURL  string
}

func (c *chatStorm) prepare(ctx context.Context) error {
	if *c.n < 1 || *c.senders < 1 || *c.senders > *c.n || *c.rate <= 0 {
		return fmt.Errorf("%w: need 1 <= -senders <= -n and -rate > 0", ErrUsage)
	}
	u, err := url.Parse(*c.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: -api %q is not an http(s) URL", ErrUsage, *c.api)
	}
	c.wsURL = strings.Replace(strings.TrimSuffix(*c.api, "/"), "http", "ws", 1) + "/api/v1/ws"
	c.hc = &http.Client{Timeout: 15 * time.Second}
	run := randomHex(4)
	c.roomID = *c.room
	if c.roomID == "" {
		host := newAPIClient(*c.api, c.hc)
		if _, err := host.register(ctx, run, 0, "streamer"); err != nil {
			return err
		}
		st, err := host.createStream(ctx, "chat bench "+run)
		if err != nil {
			return err
		}
		c.roomID = st.ID
	}
	for i := 1; i <= *c.senders; i++ {
		cl := newAPIClient(*c.api, c.hc)
		if _, err := cl.register(ctx, run, i, ""); err != nil {
			return err
		}
		c.tokens = append(c.tokens, cl.token)
	}
	return nil
}

type wsMsg struct {
	Type  string          `json:"type"`
	Room  string          `json:"room,omitempty"`
	Ref   string          `json:"ref,omitempty"`
	Body  string          `json:"body,omitempty"`
	Token string          `json:"token,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func (c *chatStorm) run(ctx context.Context, r *Run) error {
	var wg sync.WaitGroup
	for i := 0; i < *c.n; i++ {
		token := ""
		if i < len(c.tokens) {
			token = c.tokens[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(ctx, r, func() error { return c.client(ctx, r, token) })
		}()
	}
	wg.Wait()
	return nil
}

// client is one WebSocket connection: it joins the room, counts every
// bench comment it receives and its latency, and comments when signed in.
func (c *chatStorm) client(ctx context.Context, r *Run, token string) error {
	u := c.wsURL
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return fmt.Errorf("chat dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(m wsMsg) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteJSON(m)
	}
	if err := send(wsMsg{Type: "subscribe", Room: c.roomID, Ref: "join"}); err != nil {
		return fmt.Errorf("chat subscribe: %w", err)
	}
	joined := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		var once sync.Once
		for {
			var m wsMsg
			if err := conn.ReadJSON(&m); err != nil {
				readErr <- err
				return
			}
			now := time.Now()
			switch m.Type {
			case "ack":
				if m.Ref == "join" {
					once.Do(func() { close(joined) })
				}
			case "error":
				if m.Error != nil {
					r.Error(fmt.Errorf("chat: %s: %s (ref %s)", m.Error.Code, m.Error.Message, m.Ref))
				}
				if m.Ref == "join" {
					readErr <- fmt.Errorf("chat: join refused")
					return
				}
			case "comment":
				var d struct {
					Body string `json:"body"`
				}
				if json.Unmarshal(m.Data, &d) != nil || !strings.HasPrefix(d.Body, "bench ") {
					continue
				}
				ns, err := strconv.ParseInt(strings.TrimPrefix(d.Body, "bench "), 10, 64)
				if err != nil {
					continue
				}
				r.Ops.Add(1)
				r.Bytes.Add(int64(len(m.Data)))
				r.OpLatency(now.Sub(time.Unix(0, ns)))
			}
		}
	}()
	select {
	case <-joined:
	case err := <-readErr:
		return fmt.Errorf("chat join: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("chat join: no ack after 15s")
	}
	r.Active.Add(1)
	defer r.Active.Add(-1)
	var tick <-chan time.Time
	if token != "" {
		t := time.NewTicker(time.Duration(float64(time.Second) / *c.rate))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("chat read: %w", err)
		case <-tick:
			body := "bench " + strconv.FormatInt(time.Now().UnixNano(), 10)
			if err := send(wsMsg{Type: "comment", Room: c.roomID, Body: body}); err != nil {
				return fmt.Errorf("chat send: %w", err)
			}
			r.Frames.Add(1)
		}
	}
}
