package ledger

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIMatchesRoutes keeps openapi.yaml and Routes in step.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, "sqlite")
	s := startServer(t, db, DefaultConfig(), nil)
	seen := map[string]bool{}
	for _, r := range s.api.Routes() {
		ops, ok := doc.Paths[r.Path]
		if !ok {
			t.Errorf("route %s %s missing from openapi.yaml", r.Method, r.Path)
			continue
		}
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s: method missing from openapi.yaml", r.Method, r.Path)
		}
		seen[r.Path] = true
	}
	for p := range doc.Paths {
		if !seen[p] {
			t.Errorf("openapi.yaml documents %s, which is not a route", p)
		}
	}
}

func FuzzMatchPath(f *testing.F) {
	f.Add("/api/v1/streams/s1/gifts")
	f.Add("/api/v1/admin/withdrawals//approve")
	f.Add("//")
	pat := splitPath("/api/v1/streams/{id}/gifts")
	f.Fuzz(func(t *testing.T, path string) {
		p, ok := matchPath(pat, splitPath(path))
		if ok && (p["id"] == "" || strings.Contains(p["id"], "/")) {
			t.Fatalf("%q matched with id %q", path, p["id"])
		}
	})
}
