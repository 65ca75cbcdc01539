package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrAPI means the control API answered with an error.
var ErrAPI = errors.New("bench: api")

// apiClient speaks JSON to LiveEngine's control API.
type apiClient struct {
	base  string
	http  *http.Client
	token string
}

func newAPIClient(base string, hc *http.Client) *apiClient {
	return &apiClient{base: strings.TrimSuffix(base, "/"), http: hc}
}

// apiStatus is an API error with its HTTP status and error code.
type apiStatus struct {
	Status  int
	Code    string
	Message string
}

func (e *apiStatus) Error() string {
	return fmt.Sprintf("status %d %s: %s", e.Status, e.Code, e.Message)
}

// call sends body as JSON and decodes the answer into out. Extra headers
// come in pairs.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any, headers ...string) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %s: %w", ErrAPI, method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return res.StatusCode, fmt.Errorf("%w: %s %s: %w", ErrAPI, method, path, err)
	}
	if res.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		st := &apiStatus{Status: res.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		if res.StatusCode == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
				st.Message += fmt.Sprintf(" (retry after %ds)", s)
			}
		}
		return res.StatusCode, fmt.Errorf("%w: %s %s: %w", ErrAPI, method, path, st)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("%w: %s %s: decode: %w", ErrAPI, method, path, err)
		}
	}
	return res.StatusCode, nil
}

// retryLimited repeats call while the API answers 429, for set-up steps
// (registration is rate limited per client IP).
func retryLimited(ctx context.Context, f func() (int, error)) error {
	for {
		st, err := f()
		if st != http.StatusTooManyRequests {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(3 * time.Second):
		}
	}
}

type apiUser struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

type tokens struct {
	AccessToken string  `json:"access_token"`
	User        apiUser `json:"user"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// register creates an account (username bench_RUN_I) and signs c in.
func (c *apiClient) register(ctx context.Context, run string, i int, role string) (apiUser, error) {
	name := fmt.Sprintf("b%s_%d", run, i)
	body := map[string]string{"username": name, "email": name + "@bench.invalid", "password": "bench-password-" + run}
	if role != "" {
		body["role"] = role
	}
	var t tokens
	err := retryLimited(ctx, func() (int, error) { return c.call(ctx, http.MethodPost, "/api/v1/auth/register", body, &t) })
	if err != nil {
		return apiUser{}, fmt.Errorf("register %s: %w", name, err)
	}
	c.token = t.AccessToken
	return t.User, nil
}

type apiStream struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	StreamKey  string `json:"stream_key"`
	RTMPURL    string `json:"rtmp_url"`
	RTMPServer string `json:"rtmp_server"`
}

func (c *apiClient) createStream(ctx context.Context, title string) (apiStream, error) {
	var s apiStream
	err := retryLimited(ctx, func() (int, error) {
		return c.call(ctx, http.MethodPost, "/api/v1/streams", map[string]string{"title": title}, &s)
	})
	if err != nil {
		return s, fmt.Errorf("create stream: %w", err)
	}
	return s, nil
}
