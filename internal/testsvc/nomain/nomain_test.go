// Package nomain_test checks testsvc.Postgres in a test binary without
// TestMain: each call then gets a private server, stopped at test cleanup.
package nomain_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestPostgresWithoutMain(t *testing.T) {
	var u string
	t.Run("inner", func(t *testing.T) {
		u = testsvc.Postgres(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
	})
	// The private server is gone after the inner test's cleanup.
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.Path = "/postgres"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, pu.String()); err == nil {
		conn.Close(ctx)
		t.Fatalf("private server still accepts connections after cleanup")
	}
}
