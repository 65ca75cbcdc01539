package ledger

import (
	"errors"
	"reflect"
	"testing"
)

func TestLegsRoundTrip(t *testing.T) {
	legs := []Leg{{From: Wallet("amy"), To: Earnings("st\"ar<&>é"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}
	got, err := parseLegs(string(appendLegs(nil, legs)))
	if err != nil || !reflect.DeepEqual(got, legs) {
		t.Fatalf("%v %v", got, err)
	}
	plain := `[["wallet:amy","earnings:star",7],["wallet:amy","platform:commission",-3]]`
	if fast, ok := parseLegsFast(plain); !ok || len(fast) != 2 || fast[1].Amount != -3 || fast[0].To != "earnings:star" {
		t.Fatalf("fast path: %v %v", fast, ok)
	}
	for _, odd := range []string{`[ ["a","b",1]]`, `[["a\u0062","b",1]]`, `[["a","b",01]]`, `[["a","b",1e2]]`, `[["a","b",99999999999999999999]]`, `[["é","b",1]]`} {
		if _, ok := parseLegsFast(odd); ok {
			t.Errorf("fast path took %q", odd)
		}
	}
	for _, bad := range []string{``, `{}`, `[["a","b"]]`, `[["a","b",1,2]]`, `[["a","b","1"]]`, `[["a","b",1.5]]`, `[[1,"b",1]]`, `[["a","b",1]`} {
		if _, err := parseLegs(bad); !errors.Is(err, errBadLegs) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseLegs: whatever is stored, parseLegs answers legs or errBadLegs,
// never panics, and legs it accepts survive appendLegs unchanged; what the
// hand-written reader accepts, encoding/json reads the same.
func FuzzParseLegs(f *testing.F) {
	f.Add(`[["wallet:amy","earnings:star",7],["wallet:amy","platform:commission",3]]`)
	f.Add(`[["clearing:sandbox","wallet:\u00e9",1000]]`)
	f.Add(`[]`)
	f.Add(`[["a","b",1,2]]`)
	f.Fuzz(func(t *testing.T, s string) {
		if fast, ok := parseLegsFast(s); ok {
			slow, err := parseLegsJSON(s)
			if err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: by hand %v, encoding/json %v, %v", s, fast, slow, err)
			}
		}
		legs, err := parseLegs(s)
		if err != nil {
			if !errors.Is(err, errBadLegs) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		again, err := parseLegs(string(appendLegs(nil, legs)))
		if err != nil || !reflect.DeepEqual(again, legs) && len(legs) > 0 {
			t.Fatalf("%q: %v -> %v, %v", s, legs, again, err)
		}
	})
}

// BenchmarkParseLegs: a gift's legs read by hand and by encoding/json (an
// earnings report reads every gift of its period).
func BenchmarkParseLegs(b *testing.B) {
	s := `[["wallet:u7f3k2m9q1x8c4v6","earnings:s0a9d8f7g6h5j4k3",7],["wallet:u7f3k2m9q1x8c4v6","platform:commission",3]]`
	b.Run("parseLegs", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := parseLegs(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := parseLegsJSON(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
