package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }

// eachDialect runs fn against a fresh SQLite file and a fresh PostgreSQL
// database.
func eachDialect(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqldb.Open("sqlite://" + filepath.Join(t.TempDir(), "le.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s := New(db)
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := sqldb.Open(testsvc.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s := New(db)
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A second run is a no-op.
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		fn(t, s)
	})
}

func mustUser(t *testing.T, s *Store, name, role string) User {
	t.Helper()
	u := User{Username: name, Email: name + "@example.com", PasswordHash: "x", Role: role}
	if err := s.CreateUser(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUsersAndSessions(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := mustUser(t, s, "alice", RoleStreamer)
		b := mustUser(t, s, "bob", RoleViewer)
		dup := User{Username: "alice", Email: "other@example.com", PasswordHash: "x", Role: RoleViewer}
		if err := s.CreateUser(ctx, &dup); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate username: %v", err)
		}
		// SQL metacharacters are data, never code.
		evil := User{Username: "x'; DROP TABLE users; --", Email: "e@x", PasswordHash: "x", Role: RoleViewer}
		if err := s.CreateUser(ctx, &evil); err != nil {
			t.Fatal(err)
		}
		got, err := s.UserByLogin(ctx, evil.Username)
		if err != nil || got.ID != evil.ID {
			t.Fatalf("evil lookup: %v %+v", err, got)
		}
		if err := s.Follow(ctx, b.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.Follow(ctx, b.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		got, _ = s.UserByID(ctx, a.ID)
		if got.Followers != 1 {
			t.Fatalf("followers %d", got.Followers)
		}
		name := "Alice A."
		if err := s.UpdateProfile(ctx, a.ID, Profile{DisplayName: &name}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.UserByID(ctx, a.ID)
		if got.DisplayName != name || got.Role != RoleStreamer {
			t.Fatalf("profile %+v", got)
		}

		sess, tok1, err := s.CreateSession(ctx, a.ID, "ua", "127.0.0.1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, tok2, err := s.RotateSession(ctx, tok1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The old token is now a theft signal: the session dies.
		if _, _, err := s.RotateSession(ctx, tok1, time.Hour); !errors.Is(err, ErrTokenReused) {
			t.Fatalf("reuse: %v", err)
		}
		if _, _, err := s.RotateSession(ctx, tok2, time.Hour); !errors.Is(err, ErrSessionInvalid) {
			t.Fatalf("after reuse: %v", err)
		}
		if ok, _ := s.SessionActive(ctx, sess.ID); ok {
			t.Fatal("session still active")
		}
		_, tok3, _ := s.CreateSession(ctx, a.ID, "ua2", "127.0.0.1", time.Hour)
		list, err := s.Sessions(ctx, a.ID)
		if err != nil || len(list) != 1 {
			t.Fatalf("sessions %v %+v", err, list)
		}
		if err := s.RevokeSession(ctx, a.ID, list[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.RotateSession(ctx, tok3, time.Hour); !errors.Is(err, ErrSessionInvalid) {
			t.Fatalf("revoked: %v", err)
		}
		if _, _, err := s.RotateSession(ctx, "garbage", time.Hour); !errors.Is(err, ErrSessionInvalid) {
			t.Fatalf("garbage: %v", err)
		}
	})
}

func TestStreamsLifecycleAndDiscovery(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := mustUser(t, s, "alice", RoleStreamer)
		v := mustUser(t, s, "vic", RoleViewer)
		st := Stream{UserID: a.ID, Title: "Speedrun 100%_x", Category: "games", Tags: []string{"speedrun", "retro"}, Visibility: VisibilityPublic}
		if err := s.CreateStream(ctx, &st); err != nil {
			t.Fatal(err)
		}
		sched := Stream{UserID: a.ID, Title: "Later", Visibility: VisibilityPublic, ScheduledAt: time.Now().Add(time.Hour)}
		if err := s.CreateStream(ctx, &sched); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if ch, err := s.MarkLive(ctx, st.ID, "n1", t0); err != nil || !ch {
			t.Fatalf("live: %v %v", ch, err)
		}
		// Redelivery is harmless.
		if ch, err := s.MarkLive(ctx, st.ID, "n1", t0); err != nil || ch {
			t.Fatalf("live again: %v %v", ch, err)
		}
		if err := s.SetViewers(ctx, st.ID, 7); err != nil {
			t.Fatal(err)
		}
		live, err := s.Discover(ctx, Discovery{Kind: "live"})
		if err != nil || len(live) != 1 || live[0].ID != st.ID || live[0].Viewers != 7 {
			t.Fatalf("live: %v %+v", err, live)
		}
		if got, _ := s.Discover(ctx, Discovery{Kind: "live", Category: "music"}); len(got) != 0 {
			t.Fatalf("category filter: %+v", got)
		}
		c := Comment{StreamID: st.ID, UserID: v.ID, Body: "hi"}
		if err := s.AddComment(ctx, &c); err != nil {
			t.Fatal(err)
		}
		if tr, err := s.Discover(ctx, Discovery{Kind: "trending"}); err != nil || len(tr) != 1 {
			t.Fatalf("trending: %v %+v", err, tr)
		}
		if sc, err := s.Discover(ctx, Discovery{Kind: "scheduled"}); err != nil || len(sc) != 1 || sc[0].ID != sched.ID {
			t.Fatalf("scheduled: %v %+v", err, sc)
		}
		for q, want := range map[string]int{"speedrun": 1, "ALICE": 2, "100%_": 1, "x%": 0, "n_1": 0, "nothing": 0, "'; --": 0} {
			got, err := s.Discover(ctx, Discovery{Kind: "search", Query: q})
			if err != nil || len(got) != want {
				t.Errorf("search %q: %v got %d want %d", q, err, len(got), want)
			}
		}
		// An old stopped event redelivered after a newer start changes nothing.
		if ch, _ := s.MarkOffline(ctx, st.ID, t0.Add(-time.Second)); ch {
			t.Fatal("stale offline applied")
		}
		if ch, _ := s.MarkOffline(ctx, st.ID, t0.Add(time.Second)); !ch {
			t.Fatal("offline not applied")
		}
		got, _ := s.StreamByID(ctx, st.ID)
		if got.Status != StatusOffline || got.Viewers != 0 || got.PeakViewers != 7 {
			t.Fatalf("offline: %+v", got)
		}
		nk, ok, err := s.RotateKey(ctx, st.ID)
		if err != nil || nk == ok || ok != st.Key {
			t.Fatalf("rotate: %v", err)
		}
		if _, err := s.EndStream(ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		if ch, _ := s.MarkLive(ctx, st.ID, "n1", time.Now().Add(time.Minute)); ch {
			t.Fatal("ended stream went live")
		}
		if _, _, err := s.RotateKey(ctx, st.ID); !errors.Is(err, ErrConflict) {
			t.Fatalf("rotate after end: %v, want ErrConflict", err)
		}
	})
}

func TestCommentsAndModeration(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := mustUser(t, s, "alice", RoleStreamer)
		v := mustUser(t, s, "vic", RoleViewer)
		st := Stream{UserID: a.ID, Title: "t", Visibility: VisibilityPublic}
		if err := s.CreateStream(ctx, &st); err != nil {
			t.Fatal(err)
		}
		for _, body := range []string{"one", "two", "three"} {
			c := Comment{StreamID: st.ID, UserID: v.ID, Body: body}
			if err := s.AddComment(ctx, &c); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.Comments(ctx, st.ID, 2)
		if err != nil || len(list) != 2 {
			t.Fatalf("comments: %v %+v", err, list)
		}
		if err := s.DeleteComment(ctx, st.ID, list[0].ID, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteComment(ctx, st.ID, list[0].ID, a.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("double delete: %v", err)
		}
		list, _ = s.Comments(ctx, st.ID, 10)
		if len(list) != 2 {
			t.Fatalf("after delete: %+v", list)
		}
		if err := s.AddModerator(ctx, st.ID, v.ID); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.IsModerator(ctx, st.ID, v.ID); !ok {
			t.Fatal("not moderator")
		}
		if err := s.Sanction(ctx, Sanction{StreamID: st.ID, UserID: v.ID, Kind: SanctionBan, By: a.ID}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Sanctioned(ctx, st.ID, v.ID, SanctionBan); !ok {
			t.Fatal("not banned")
		}
		if err := s.Sanction(ctx, Sanction{StreamID: st.ID, UserID: v.ID, Kind: SanctionMute, By: a.ID, Until: time.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Sanctioned(ctx, st.ID, v.ID, SanctionMute); ok {
			t.Fatal("expired mute active")
		}
		if err := s.LiftSanction(ctx, st.ID, v.ID, SanctionBan); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Sanctioned(ctx, st.ID, v.ID, SanctionBan); ok {
			t.Fatal("still banned")
		}
	})
}
