package rawhttp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestLoopAgainstServer drives a real HTTP server: every request answered
// once on its own connection, in order, bodies intact, and a second run
// with Pause set does the same.
func TestLoopAgainstServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Seq"), b)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	for _, pause := range []time.Duration{0, 200 * time.Microsecond} {
		const conns, per = 7, 40
		sent := make([]int, conns)
		got := make([]int, conns)
		var missing int
		l := &Loop{Addr: ln.Addr().String(), Conns: conns, Pause: pause, Timeout: 30 * time.Second}
		l.Request = func(c int, buf []byte) ([]byte, bool) {
			if sent[c] == per {
				return nil, false
			}
			sent[c]++
			path := "/x"
			if sent[c]%10 == 0 {
				path = "/missing"
			}
			body := strconv.Itoa(c)
			buf = append(buf, "POST "+path+" HTTP/1.1\r\nHost: t\r\nX-Seq: "+strconv.Itoa(sent[c])+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body...)
			return buf, true
		}
		l.Answer = func(c int, a Answer) {
			got[c]++
			if a.Status == http.StatusNotFound {
				missing++
				return
			}
			if want := fmt.Sprintf("%d %d", got[c], c); a.Status != http.StatusCreated || string(a.Body) != want {
				t.Errorf("connection %d answer %d: %d %q, want 201 %q", c, got[c], a.Status, a.Body, want)
			}
			if !bytes.HasPrefix(a.Head, []byte("HTTP/1.1 201")) || a.Latency <= 0 {
				t.Errorf("head %q latency %s", a.Head, a.Latency)
			}
		}
		if err := l.Run(); err != nil {
			t.Fatal(err)
		}
		for c := range got {
			if got[c] != per {
				t.Errorf("pause %s: connection %d: %d answers, want %d", pause, c, got[c], per)
			}
		}
		if missing != conns*per/10 || l.Reads < conns*per {
			t.Errorf("pause %s: %d not-found answers, %d reads", pause, missing, l.Reads)
		}
	}
}

// TestLoopServerCloses: a connection the server closes is an error, not a
// hang.
func TestLoopServerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	l := &Loop{Addr: ln.Addr().String(), Conns: 2, Timeout: 30 * time.Second,
		Request: func(c int, buf []byte) ([]byte, bool) {
			return append(buf, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"...), true
		},
		Answer: func(int, Answer) {}}
	if err := l.Run(); err == nil {
		t.Fatal("no error for a closed connection")
	}
}

func TestParseAnswer(t *testing.T) {
	answer := []byte("HTTP/1.1 201 Created\r\nServer: x\r\nContent-Length: 5\r\n\r\n{}{}}HTTP/1.1")
	whole := len(answer) - len("HTTP/1.1")
	for cut := 0; cut < whole+1; cut++ {
		st, body, size, ok, err := ParseAnswer(answer[:cut])
		if err != nil && cut >= 12 {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if ok && (st != 201 || size != whole || string(answer[body:size]) != "{}{}}") {
			t.Fatalf("cut %d: status %d body %d size %d", cut, st, body, size)
		}
		if ok != (cut >= whole) {
			t.Fatalf("cut %d: ok=%v", cut, ok)
		}
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"junk\r\n\r\n",
	} {
		if _, _, _, _, err := ParseAnswer([]byte(bad)); !errors.Is(err, ErrAnswer) {
			t.Errorf("%q: err %v, want ErrAnswer", bad, err)
		}
	}
}

// FuzzParseAnswer: any bytes give an error, an incomplete answer, or a
// body that lies inside them.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, body, size, ok, err := ParseAnswer(b)
		if err != nil || !ok {
			return
		}
		if st < 0 || st > 999 || body < 16 || body > size || size > len(b) {
			t.Fatalf("status %d body %d size %d of %d bytes", st, body, size, len(b))
		}
	})
}
