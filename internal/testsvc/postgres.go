package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster is a PostgreSQL server started from a fresh initdb directory.
type pgCluster struct {
	root string // owns data/, the unix socket and the server log
	port int
	proc *process
}

// adminURL reaches the maintenance database, used to create test databases.
func (c *pgCluster) adminURL() string { return c.url("postgres") }

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// stop shuts the server down (SIGINT is PostgreSQL's fast shutdown, the
// same as pg_ctl stop -m fast) and removes its directory.
func (c *pgCluster) stop() {
	c.proc.stop(syscall.SIGINT, 30*time.Second)
	_ = os.RemoveAll(c.root)
}

// shared is the one cluster of a test binary that uses Main.
var shared struct {
	mu         sync.Mutex
	mainActive bool
	cluster    *pgCluster
	err        error
}

// Main runs the tests of a package that uses Postgres and then stops the
// package's PostgreSQL cluster and removes its files:
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.mainActive = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	c := shared.cluster
	shared.cluster = nil
	shared.mainActive = false
	shared.mu.Unlock()
	if c != nil {
		c.stop()
	}
	return code
}

// Postgres returns the URL of a fresh, empty database
// (postgres://postgres@127.0.0.1:PORT/t_xxx?sslmode=disable) on a real
// PostgreSQL server. With Main the server is shared by the whole test binary;
// without it each call starts its own server, stopped at test cleanup (slower,
// but nothing leaks). The database is dropped at test cleanup.
func Postgres(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	var c *pgCluster
	if shared.mainActive {
		if shared.cluster == nil && shared.err == nil {
			shared.cluster, shared.err = startCluster()
		}
		c = shared.cluster
		if shared.err != nil {
			err := shared.err
			shared.mu.Unlock()
			t.Fatal(err)
		}
		shared.mu.Unlock()
	} else {
		shared.mu.Unlock()
		t.Log("testsvc: no TestMain calling testsvc.Main; starting a private PostgreSQL server for this test")
		var err error
		c, err = startCluster()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.stop)
	}

	name := "t_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.adminURL())
	if err != nil {
		t.Fatalf("testsvc: connect to postgres on port %d: %v", c.port, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testsvc: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.adminURL())
		if err != nil {
			return // the per-test server is already gone
		}
		defer conn.Close(context.Background())
		// FORCE ends connections a test forgot to close.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testsvc: drop database %s: %v", name, err)
		}
	})
	return c.url(name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pgBinDir finds PostgreSQL's server binaries, preferring version 15.
func pgBinDir() (string, error) {
	candidates := []string{"/usr/lib/postgresql/15/bin/initdb"}
	if more, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(more) > 0 {
		sort.Sort(sort.Reverse(sort.StringSlice(more)))
		candidates = append(candidates, more...)
	}
	initdb, err := findOrInstall("initdb", "postgresql", candidates...)
	if err != nil {
		// apt-get may just have installed it under /usr/lib/postgresql.
		if more, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(more) > 0 {
			return filepath.Dir(more[0]), nil
		}
		return "", err
	}
	return filepath.Dir(initdb), nil
}

// startCluster runs initdb in a fresh directory and starts the server on a
// free loopback port. PostgreSQL refuses to run as root, so as root both run
// as the postgres user.
func startCluster() (*pgCluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	parent := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("testsvc: running as root needs the postgres user (apt-get install -y postgresql): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// /tmp, not $TMPDIR: the postgres user must be able to reach it.
		parent = "/tmp"
	}
	removeStaleClusters(parent)
	root, err := os.MkdirTemp(parent, "testsvc-pg-")
	if err != nil {
		return nil, fmt.Errorf("testsvc: postgres dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(root, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(root)
			return nil, fmt.Errorf("testsvc: chown %s: %w", root, err)
		}
	}
	data := filepath.Join(root, "data")
	env := append(os.Environ(), "LC_ALL=C", "LANG=C")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Dir = root
	initdb.Env = env
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("testsvc: initdb: %w: %s", err, tail(out))
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, err
		}
		// The postmaster runs as our direct child (rather than detached by
		// pg_ctl) so that the kernel kills it if the test binary dies.
		cmd := exec.Command(filepath.Join(bin, "postgres"),
			"-D", data,
			"-p", strconv.Itoa(port),
			"-k", root,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=on",
			"-c", "max_connections=200",
		)
		cmd.Dir = root
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		p, err := startProcess(cmd)
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, err
		}
		c := &pgCluster{root: root, port: port, proc: p}
		if err := waitPostgres(c); err != nil {
			p.stop(syscall.SIGKILL, time.Second)
			lastErr = err
			continue
		}
		return c, nil
	}
	_ = os.RemoveAll(root)
	return nil, fmt.Errorf("testsvc: postgres did not start: %w", lastErr)
}

// waitPostgres polls a connection until the server accepts one, the process
// exits, or the deadline passes.
func waitPostgres(c *pgCluster) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, c.adminURL())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.proc.exited:
			return fmt.Errorf("postgres on port %d exited (%v): %s", c.port, c.proc.err, c.proc.log.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on port %d did not accept connections within %s: %w: %s", c.port, startTimeout, err, tail([]byte(c.proc.log.String())))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// removeStaleClusters deletes cluster directories left by test binaries that
// were killed (their servers died with them, by Pdeathsig, but the files
// stay): directories whose postmaster is not running and that nobody has
// touched for ten minutes (so an initdb in progress is left alone).
func removeStaleClusters(parent string) {
	if parent == "" {
		parent = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(parent, "testsvc-pg-*"))
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() || time.Since(st.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(pidFile), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 {
				if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
					continue // still running
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}
