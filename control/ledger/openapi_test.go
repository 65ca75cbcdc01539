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

// FuzzMatchPath checks matchPath against splitting the path the obvious
// way, on the gift route's pattern.
func FuzzMatchPath(f *testing.F) {
	f.Add("/api/v1/streams/s1/gifts")
	f.Add("/api/v1/admin/withdrawals//approve")
	f.Add("//")
	const pattern = "/api/v1/streams/{id}/gifts"
	pat := parsePattern(pattern)
	want := strings.Split(strings.Trim(pattern, "/"), "/")
	f.Fuzz(func(t *testing.T, path string) {
		p, ok := matchPath(pat, path)
		if ok && (p.get("id") == "" || strings.Contains(p.get("id"), "/")) {
			t.Fatalf("%q matched with id %q", path, p.get("id"))
		}
		segs := strings.Split(strings.Trim(path, "/"), "/")
		refOK := len(segs) == len(want)
		for i := 0; refOK && i < len(want); i++ {
			if want[i] == "{id}" {
				refOK = segs[i] != ""
			} else {
				refOK = segs[i] == want[i]
			}
		}
		if ok != refOK {
			t.Fatalf("%q: matched %v, splitting says %v", path, ok, refOK)
		}
		if ok && p.get("id") != segs[3] {
			t.Fatalf("%q: id %q, splitting says %q", path, p.get("id"), segs[3])
		}
	})
}
