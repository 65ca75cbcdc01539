package testsvc_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }

func TestRedis(t *testing.T) {
	u := testsvc.Redis(t)
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("parse %q: %v", u, err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	// Persistence is off: a test server writes nothing to disk.
	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err != nil {
		t.Fatalf("CONFIG GET save: %v", err)
	}
	if cfg["save"] != "" {
		t.Fatalf("save = %q, want empty", cfg["save"])
	}
}

func TestRedisFreshPerCall(t *testing.T) {
	a, b := testsvc.Redis(t), testsvc.Redis(t)
	if a == b {
		t.Fatalf("two calls returned the same server %s", a)
	}
}

func TestRedisStoppedAtCleanup(t *testing.T) {
	var addr string
	t.Run("inner", func(t *testing.T) {
		u, err := url.Parse(testsvc.Redis(t))
		if err != nil {
			t.Fatal(err)
		}
		addr = u.Host
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("redis on %s still accepts connections after cleanup", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPostgres(t *testing.T) {
	a := testsvc.Postgres(t)
	b := testsvc.Postgres(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range []string{a, b} {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect %s: %v", u, err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id bigint primary key, note text)"); err != nil {
			t.Fatalf("create table in %s: %v", u, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1, 'x')"); err != nil {
			t.Fatalf("insert in %s: %v", u, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Fatalf("count = %d, %v; want 1 (databases must be separate)", n, err)
		}
		var fsync string
		if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
			t.Fatalf("fsync = %q, %v; want on", fsync, err)
		}
		conn.Close(ctx)
	}
}

func TestRedisRestart(t *testing.T) {
	srv := testsvc.StartRedis(t)
	opt, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING answered by a stopped server")
	}
	srv.Restart()
	// The server is back, on the same URL, and empty.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart = %d, %v; want 0", n, err)
	}
}
