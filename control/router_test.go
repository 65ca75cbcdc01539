package control

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitPath(t *testing.T) {
	for _, p := range []string{"", "/", "//", "/api/v1/streams/abc/gifts", "api/v1/", "/a//b/", strings.Repeat("/x", maxSegs-1), strings.Repeat("/x", maxSegs), strings.Repeat("/x", maxSegs+1), strings.Repeat("/x", 40)} {
		var buf [maxSegs]string
		if got, want := splitPath(p, &buf), strings.Split(strings.Trim(p, "/"), "/"); !slices.Equal(got, want) {
			t.Errorf("%q: %q, want %q", p, got, want)
		}
	}
}

// FuzzSplitPath: the allocation-free split agrees with strings.Split.
func FuzzSplitPath(f *testing.F) {
	f.Add("/api/v1/streams/abc/gifts")
	f.Fuzz(func(t *testing.T, p string) {
		var buf [maxSegs]string
		if got, want := splitPath(p, &buf), strings.Split(strings.Trim(p, "/"), "/"); !slices.Equal(got, want) {
			t.Fatalf("%q: %q, want %q", p, got, want)
		}
	})
}

// TestRouterMatch: routes of other segment counts are not candidates; a
// path under another method lists the allowed ones; params are read.
func TestRouterMatch(t *testing.T) {
	var r router
	for _, rt := range []struct{ m, p string }{
		{"GET", "/api/v1/streams/{id}"}, {"POST", "/api/v1/streams/{id}/gifts"},
		{"GET", "/api/v1/streams/{id}/gifts"}, {"POST", "/api/v1/streams"}, {"GET", "/api/v1/streams/live/gifts"},
	} {
		r.add(rt.m, rt.p, Public, nil)
	}
	rt, params, _ := r.match("POST", "/api/v1/streams/s1/gifts")
	if rt == nil || rt.Pattern != "/api/v1/streams/{id}/gifts" || params["id"] != "s1" {
		t.Fatalf("gift route: %+v %v", rt, params)
	}
	// The first route added wins, as before.
	if rt, _, _ := r.match("GET", "/api/v1/streams/live/gifts"); rt == nil || rt.Pattern != "/api/v1/streams/{id}/gifts" {
		t.Fatalf("order: %+v", rt)
	}
	if rt, _, allowed := r.match("DELETE", "/api/v1/streams/s1/gifts/"); rt != nil || !slices.Equal(allowed, []string{"POST", "GET"}) {
		t.Fatalf("allowed: %+v %v", rt, allowed)
	}
	if rt, _, allowed := r.match("GET", "/api/v1/streams/s1/gifts/x"); rt != nil || allowed != nil {
		t.Fatalf("no route: %+v %v", rt, allowed)
	}
}
