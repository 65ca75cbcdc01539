package sqldb

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestRebind(t *testing.T) {
	tests := []struct {
		d    Dialect
		in   string
		want string
	}{
		{SQLite, "SELECT ? , ?", "SELECT ? , ?"},
		{Postgres, "SELECT ? , ?", "SELECT $1 , $2"},
		{Postgres, "SELECT '?' , ?", "SELECT '?' , $1"},
		{Postgres, "SELECT 1", "SELECT 1"},
	}
	for _, tt := range tests {
		if got := Rebind(tt.d, tt.in); got != tt.want {
			t.Errorf("Rebind(%s, %q) = %q, want %q", tt.d, tt.in, got, tt.want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "le.db")
	db, err := Open("sqlite://" + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if db.Dialect != SQLite {
		t.Fatalf("dialect %q", db.Dialect)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode %q, want wal", mode)
	}
	if _, err := db.Exec("CREATE TABLE t (a TEXT UNIQUE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(db.Rebind("INSERT INTO t (a) VALUES (?)"), "x"); err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(db.Rebind("INSERT INTO t (a) VALUES (?)"), "x")
	if !IsUniqueViolation(err) {
		t.Fatalf("want unique violation, got %v", err)
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := Open("mysql://u:secret@h/db")
	if !errors.Is(err, ErrUnsupportedURL) {
		t.Fatalf("want ErrUnsupportedURL, got %v", err)
	}
	if got := err.Error(); strings.Contains(got, "secret") {
		t.Fatalf("error leaks password: %s", got)
	}
}
