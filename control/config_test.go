package control

import (
	"math"
	"strings"
	"testing"
)

// fasthttp gets 2 × max_body_bytes; a setting near the int limit overflowed
// to a negative value, which fasthttp replaces with its 4 MB default.
func TestConfigRefusesOverflowingBodyLimit(t *testing.T) {
	conf := testConfig(t, "")
	if err := conf.Validate(); err != nil {
		t.Fatal(err)
	}
	conf.MaxBodyBytes = math.MaxInt/2 + 1
	if err := conf.Validate(); err == nil || !strings.Contains(err.Error(), "control.max_body_bytes") {
		t.Fatalf("max_body_bytes %d: want a named error, got %v", conf.MaxBodyBytes, err)
	}
}
