// Package sqldb opens the control plane's SQL database and hides the few
// differences between its two dialects: SQLite (modernc.org/sqlite, the
// embedded default) and PostgreSQL (pgx). Every package that keeps tables in
// the control database (control/store, control/ledger) shares one *DB.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect names the SQL dialect of a database.
type Dialect string

// Supported dialects.
const (
	// SQLite is the embedded default database.
	SQLite Dialect = "sqlite"
	// Postgres is PostgreSQL through pgx.
	Postgres Dialect = "postgres"
)

// ErrUnsupportedURL is returned by Open for a database URL whose scheme is
// neither sqlite:// nor postgres:// (or postgresql://).
var ErrUnsupportedURL = errors.New("unsupported database url (want sqlite://PATH or postgres://...)")

// DB is an open database with its dialect.
type DB struct {
	*sql.DB
	// Dialect says which SQL the database speaks.
	Dialect Dialect
}

// Open opens the database at url:
//
//	sqlite://data/liveengine.db     relative path
//	sqlite:///var/lib/le/le.db      absolute path
//	sqlite://:memory:               private in-memory database (one connection)
//	postgres://user:pw@host/db      PostgreSQL through pgx
//
// SQLite runs in WAL mode with a busy timeout and foreign keys on; its parent
// directory is created when missing.
func Open(url string) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "sqlite://"):
		return openSQLite(strings.TrimPrefix(url, "sqlite://"))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(url)
	default:
		return nil, fmt.Errorf("open database %q: %w", redact(url), ErrUnsupportedURL)
	}
}

func openSQLite(path string) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("open sqlite: empty path: %w", ErrUnsupportedURL)
	}
	memory := path == ":memory:"
	if !memory {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open sqlite %q: %w", path, err)
			}
		}
	}
	// _pragma parameters run on every new connection of the pool, so each
	// one gets WAL, the busy timeout and foreign keys.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
	if !memory {
		dsn += "&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	if memory {
		// Every connection to :memory: is a different database.
		db.SetMaxOpenConns(1)
	} else {
		// SQLite has one writer; a small pool keeps readers concurrent
		// without piling up writers that would only wait on the lock.
		// Every connection stays open: with database/sql's default of 2
		// idle ones, a burst of 8 closed 6 and opened them again (file
		// open, the pragmas, the schema parsed, each prepared statement
		// prepared again on the new connection): ~25 µs of CPU per gift
		// under a gift storm.
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	return &DB{DB: db, Dialect: SQLite}, nil
}

func openPostgres(url string) (*DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres %q: %w", redact(url), err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres %q: %w", redact(url), err)
	}
	return &DB{DB: db, Dialect: Postgres}, nil
}

// Rebind turns the ? placeholders of query into $1, $2, ... for PostgreSQL
// and returns query unchanged for SQLite. Question marks inside single-quoted
// string literals are left alone.
func (d *DB) Rebind(query string) string {
	return Rebind(d.Dialect, query)
}

// Rebind is DB.Rebind for a dialect without a database.
func Rebind(d Dialect, query string) string {
	if d != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	inString := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			inString = !inString
			b.WriteByte(c)
		case c == '?' && !inString:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// IsUniqueViolation reports whether err is a unique-constraint violation in
// either dialect, so callers can answer "already exists" instead of 500.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || // sqlite
		strings.Contains(s, "SQLSTATE 23505") // postgres
}

// redact hides the password of a URL for error messages and logs.
func redact(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	userinfo := url[scheme+3 : at]
	if colon := strings.Index(userinfo, ":"); colon >= 0 {
		return url[:scheme+3] + userinfo[:colon] + ":xxx" + url[at:]
	}
	return url
}
