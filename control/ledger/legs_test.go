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
	for _, bad := range []string{``, `{}`, `[["a","b"]]`, `[["a","b",1,2]]`, `[["a","b","1"]]`, `[["a","b",1.5]]`, `[[1,"b",1]]`, `[["a","b",1]`} {
		if _, err := parseLegs(bad); !errors.Is(err, errBadLegs) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseLegs: whatever is stored, parseLegs answers legs or errBadLegs,
// never panics, and legs it accepts survive appendLegs unchanged.
func FuzzParseLegs(f *testing.F) {
	f.Add(`[["wallet:amy","earnings:star",7],["wallet:amy","platform:commission",3]]`)
	f.Add(`[["clearing:sandbox","wallet:\u00e9",1000]]`)
	f.Add(`[]`)
	f.Add(`[["a","b",1,2]]`)
	f.Fuzz(func(t *testing.T, s string) {
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
