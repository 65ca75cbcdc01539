package ledger

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(testsvc.Main(m))
}

// dialects are the databases every money test runs on.
var dialects = []string{"sqlite", "postgres"}

func testLog() *slog.Logger {
	if os.Getenv("LEDGER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openDB opens a fresh, migrated database of the dialect; it is closed at
// cleanup after the ledger invariants were checked on it.
func openDB(t testing.TB, dialect string) *sqldb.DB {
	t.Helper()
	var url string
	switch dialect {
	case "sqlite":
		url = "sqlite://" + filepath.Join(t.TempDir(), "ledger.db")
	case "postgres":
		url = testsvc.Postgres(t)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	db, err := sqldb.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// newLedger starts a ledger on db, closed at cleanup.
func newLedger(t testing.TB, db *sqldb.DB, conf Config) *Ledger {
	t.Helper()
	l, err := New(db, conf, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// mustInvariants fails the test unless the ledger is sound.
func mustInvariants(t testing.TB, db *sqldb.DB) Report {
	t.Helper()
	r, err := CheckInvariants(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("invariants: %v (%+v)", err, r)
	}
	return r
}
