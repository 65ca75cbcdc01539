package store

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// TestStreamOwner: the gift path's narrow lookup agrees with StreamByID
// through a stream's life, and knows no unknown stream.
func TestStreamOwner(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := mustUser(t, s, "alice", RoleStreamer)
		st := Stream{UserID: a.ID, Title: "t", Visibility: VisibilityPublic}
		if err := s.CreateStream(ctx, &st); err != nil {
			t.Fatal(err)
		}
		check := func(want string) {
			t.Helper()
			owner, status, err := s.StreamOwner(ctx, st.ID)
			if err != nil || owner != a.ID || status != want {
				t.Fatalf("StreamOwner: %q %q %v, want %q %q", owner, status, err, a.ID, want)
			}
			full, err := s.StreamByID(ctx, st.ID)
			if err != nil || full.UserID != owner || full.Status != status {
				t.Fatalf("StreamByID: %+v %v, StreamOwner %q %q", full, err, owner, status)
			}
		}
		check(StatusCreated)
		if _, err := s.MarkLive(ctx, st.ID, "n1", time.Now()); err != nil {
			t.Fatal(err)
		}
		check(StatusLive)
		if _, err := s.MarkOffline(ctx, st.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		check(StatusOffline)
		if _, _, err := s.StreamOwner(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown stream: %v, want ErrNotFound", err)
		}
	})
}

// BenchmarkStreamLookup compares StreamOwner (asked once per gift) with
// StreamByID on SQLite; cpu-us/op is the process's CPU per lookup.
func BenchmarkStreamLookup(b *testing.B) {
	db, err := sqldb.Open("sqlite://" + filepath.Join(b.TempDir(), "le.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	s := New(db)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	u := User{Username: "alice", Email: "a@example.com", PasswordHash: "x", Role: RoleStreamer}
	if err := s.CreateUser(ctx, &u); err != nil {
		b.Fatal(err)
	}
	st := Stream{UserID: u.ID, Title: "t", Tags: []string{"a", "b"}, Visibility: VisibilityPublic}
	if err := s.CreateStream(ctx, &st); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		lookup func() error
	}{
		{"StreamByID", func() error { _, err := s.StreamByID(ctx, st.ID); return err }},
		{"StreamOwner", func() error { _, _, err := s.StreamOwner(ctx, st.ID); return err }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuNanos()
			for b.Loop() {
				if err := tc.lookup(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/1000, "cpu-us/op")
		})
	}
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
