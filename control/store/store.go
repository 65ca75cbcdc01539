// Package store keeps the control plane's users, sessions, streams, comments
// and moderation records in SQL (SQLite by default, PostgreSQL for scale).
// All SQL is written once with ? placeholders and rebound per dialect.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/liveengine/liveengine/control/sqldb"
)

// ErrNotFound is returned when the requested row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique value (username, email) is taken.
var ErrConflict = errors.New("already exists")

// Store is the control plane's data access.
type Store struct {
	db *sqldb.DB

	// ownerMu guards preparing ownerStmt (StreamOwner), once it worked.
	ownerMu   sync.Mutex
	ownerStmt atomic.Pointer[sql.Stmt]
}

// New wraps an open database; call Migrate before use.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// DB returns the shared database, for packages that keep their own tables
// in it (control/ledger).
func (s *Store) DB() *sqldb.DB { return s.db }

// Migrate applies the store's migrations.
func (s *Store) Migrate(ctx context.Context) error { return Migrate(ctx, s.db) }

// dbContext keeps a request's context from outliving its request.
// Handlers pass their *fasthttp.RequestCtx, which fasthttp recycles when the
// handler returns; database/sql watches a cancellable context from a
// goroutine of its own (and reads its cause when it fires, as at server
// shutdown), which raced with that recycling. Queries from handlers run
// without the request's cancellation; the request's values stay readable.
func dbContext(ctx context.Context) context.Context {
	if _, ok := ctx.(*fasthttp.RequestCtx); ok {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(dbContext(ctx), s.db.Rebind(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.db.QueryRowContext(dbContext(ctx), s.db.Rebind(q), args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(dbContext(ctx), s.db.Rebind(q), args...)
}

func nowMillis() int64 { return time.Now().UnixMilli() }

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random, URL-safe id of n random bytes.
func NewID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return idEncoding.EncodeToString(b)
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// likePattern escapes LIKE metacharacters in a user's search text so they
// match literally, and lower-cases it (both sides are compared lower-case).
func likePattern(q string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(q)) + "%"
}
