// Package testsvc starts the real services that tests talk to: a fresh
// redis-server per call and one PostgreSQL cluster per test binary with a
// fresh database per call. Tests use them instead of mocks, so what passes in
// a test is what runs in production.
//
// Servers run as plain child processes on free loopback ports. A missing
// server binary is installed with apt-get when the test runs as root; a test
// never skips for a missing tool.
package testsvc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer after it was
// started; generous because the CPU is small and shared.
const startTimeout = 60 * time.Second

// installMu serialises apt-get runs inside one test binary.
var installMu sync.Mutex

// findOrInstall returns the path of a program, installing the Debian package
// pkg when the program is missing and the process runs as root.
func findOrInstall(prog, pkg string, candidates ...string) (string, error) {
	look := func() (string, bool) {
		for _, c := range candidates {
			if st, err := os.Stat(c); err == nil && !st.IsDir() {
				return c, true
			}
		}
		if p, err := exec.LookPath(prog); err == nil {
			return p, true
		}
		return "", false
	}
	if p, ok := look(); ok {
		return p, nil
	}
	installMu.Lock()
	defer installMu.Unlock()
	if p, ok := look(); ok {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("testsvc: %s not found and not running as root to install it: run `apt-get install -y %s`", prog, pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		// The package lists may be missing on a fresh machine.
		upd := exec.CommandContext(ctx, "apt-get", "update")
		if uout, uerr := upd.CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("testsvc: apt-get update for %s: %w: %s", pkg, uerr, tail(uout))
		}
		cmd = exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out2, err2 := cmd.CombinedOutput(); err2 != nil {
			return "", fmt.Errorf("testsvc: apt-get install %s: %w: %s (first attempt: %s)", pkg, err2, tail(out2), tail(out))
		}
	}
	if p, ok := look(); ok {
		return p, nil
	}
	return "", fmt.Errorf("testsvc: %s still missing after apt-get install %s", prog, pkg)
}

// freePort asks the kernel for a free loopback TCP port. Another process may
// take it before the server binds it; callers retry on a failed start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testsvc: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is a started server with a channel closed when it exits.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set before exited is closed
	log    *lockedBuffer
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, exited: make(chan struct{}), log: &lockedBuffer{}}
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// If the test binary dies (panic, -timeout), the kernel kills the server
	// so that no orphan keeps eating the small shared CPU.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testsvc: start %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop signals the process and waits for it to exit, killing it after grace.
func (p *process) stop(sig os.Signal, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// lockedBuffer keeps the last output of a server for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-32<<10:]...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// Redis starts a fresh redis-server on a free loopback port, without
// persistence, waits until it answers PING, and returns its URL
// (redis://127.0.0.1:PORT/0). The server is killed at test cleanup.
func Redis(t testing.TB) string {
	t.Helper()
	return StartRedis(t).URL
}

// RedisServer is a redis-server owned by one test, which the test can stop
// and start again on the same port to check that clients recover.
type RedisServer struct {
	// URL is redis://127.0.0.1:PORT/0.
	URL string

	t    testing.TB
	bin  string
	dir  string
	port int
	mu   sync.Mutex
	proc *process
}

// StartRedis is Redis returning the server, for tests that restart it.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := findOrInstall("redis-server", "redis-server", "/usr/bin/redis-server")
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{t: t, bin: bin, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(); lastErr == nil {
			s.URL = "redis://" + s.addr() + "/0"
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("testsvc: redis-server did not start: %v", lastErr)
	return nil
}

func (s *RedisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *RedisServer) start() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "no",
	)
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	if err := waitRedis(s.addr(), p); err != nil {
		p.stop(syscall.SIGKILL, time.Second)
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// Stop kills the server (its data is lost: persistence is off). Clients see
// their connections drop. Stopping twice is harmless.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.stop(syscall.SIGTERM, 10*time.Second)
	}
}

// Restart starts a stopped server again, empty, on the same port; it fails
// the test if the port was taken meanwhile.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("testsvc: restart redis-server on %s: %v", s.addr(), err)
	}
}

// waitRedis polls PING until the server answers +PONG, the process exits, or
// the deadline passes.
func waitRedis(addr string, p *process) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := pingRedis(addr)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server on %s exited (%v): %s", addr, p.err, tail([]byte(p.log.String())))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %w: %s", addr, startTimeout, err, tail([]byte(p.log.String())))
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("unexpected PING reply %q", strings.TrimSpace(line))
	}
	return nil
}
