package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/liveengine/liveengine/control/sqldb"
)

// migrations are applied in order, once each, in one transaction apiece. The
// SQL is the common subset of SQLite and PostgreSQL: TEXT ids, BIGINT unix
// milliseconds for times (no time zone surprises in either dialect).
var migrations = []string{
	// 1: users, sessions, follows.
	`CREATE TABLE users (
		id            TEXT PRIMARY KEY,
		username      TEXT NOT NULL UNIQUE,
		email         TEXT NOT NULL UNIQUE,
		password_hash TEXT NOT NULL,
		role          TEXT NOT NULL,
		display_name  TEXT NOT NULL DEFAULT '',
		avatar_url    TEXT NOT NULL DEFAULT '',
		bio           TEXT NOT NULL DEFAULT '',
		created_at    BIGINT NOT NULL
	);
	CREATE TABLE sessions (
		id           TEXT PRIMARY KEY,
		user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		token_hash   TEXT NOT NULL,
		prev_hash    TEXT NOT NULL DEFAULT '',
		user_agent   TEXT NOT NULL DEFAULT '',
		ip           TEXT NOT NULL DEFAULT '',
		created_at   BIGINT NOT NULL,
		last_used_at BIGINT NOT NULL,
		expires_at   BIGINT NOT NULL,
		revoked_at   BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX sessions_user ON sessions(user_id);
	CREATE TABLE follows (
		follower_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		followee_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at  BIGINT NOT NULL,
		PRIMARY KEY (follower_id, followee_id)
	);
	CREATE INDEX follows_followee ON follows(followee_id)`,

	// 2: streams, comments, moderation.
	`CREATE TABLE streams (
		id               TEXT PRIMARY KEY,
		user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		title            TEXT NOT NULL,
		category         TEXT NOT NULL DEFAULT '',
		tags             TEXT NOT NULL DEFAULT '',
		visibility       TEXT NOT NULL,
		scheduled_at     BIGINT NOT NULL DEFAULT 0,
		stream_key       TEXT NOT NULL UNIQUE,
		status           TEXT NOT NULL,
		status_at        BIGINT NOT NULL DEFAULT 0,
		viewers          INTEGER NOT NULL DEFAULT 0,
		peak_viewers     INTEGER NOT NULL DEFAULT 0,
		node_id          TEXT NOT NULL DEFAULT '',
		started_at       BIGINT NOT NULL DEFAULT 0,
		ended_at         BIGINT NOT NULL DEFAULT 0,
		last_activity_at BIGINT NOT NULL DEFAULT 0,
		created_at       BIGINT NOT NULL,
		updated_at       BIGINT NOT NULL
	);
	CREATE INDEX streams_user ON streams(user_id);
	CREATE INDEX streams_status ON streams(status, viewers);
	CREATE INDEX streams_scheduled ON streams(scheduled_at);
	CREATE TABLE comments (
		id         TEXT PRIMARY KEY,
		stream_id  TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
		user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		body       TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		deleted_at BIGINT NOT NULL DEFAULT 0,
		deleted_by TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX comments_stream ON comments(stream_id, created_at);
	CREATE TABLE stream_moderators (
		stream_id  TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
		user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (stream_id, user_id)
	);
	CREATE TABLE stream_sanctions (
		stream_id  TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
		user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		kind       TEXT NOT NULL,
		until_at   BIGINT NOT NULL DEFAULT 0,
		by_user    TEXT NOT NULL,
		reason     TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		PRIMARY KEY (stream_id, user_id, kind)
	)`,
}

// Migrate brings the schema up to date. It is safe to run from several
// processes at once: each migration runs in a transaction and records itself
// in schema_migrations, whose primary key refuses a second recorder.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		if err := applyMigration(ctx, db, version, m); err != nil {
			return fmt.Errorf("migrate: version %d: %w", version, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sqldb.DB, version int, script string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if db.Dialect == sqldb.Postgres {
		// Serialise concurrent migrators; released at commit.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7312001)"); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, db.Rebind("SELECT COUNT(*) FROM schema_migrations WHERE version = ?"), version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, stmt := range strings.Split(script, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"), version, nowMillis()); err != nil {
		return err
	}
	return tx.Commit()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
