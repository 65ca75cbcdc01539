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

// password_cost beyond 16 makes each sign-in take seconds to minutes, and
// a comment rate near zero an endless Retry-After: both are refused by name.
func TestConfigRefusesUnusableCosts(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*Config)
		says string
	}{
		{"password cost 17", func(c *Config) { c.PasswordCost = 17 }, "control.password_cost"},
		{"password cost 31", func(c *Config) { c.PasswordCost = 31 }, "control.password_cost"},
		{"comment rate 1e-300", func(c *Config) { c.Limits.CommentsPerSecond = 1e-300 }, "control.limits.comments_per_second"},
		{"comment rate 0", func(c *Config) { c.Limits.CommentsPerSecond = 0 }, "control.limits.comments_per_second"},
	} {
		conf := testConfig(t, "")
		c.set(&conf)
		if err := conf.Validate(); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: want an error naming %s, got %v", c.name, c.says, err)
		}
	}
	conf := testConfig(t, "")
	conf.PasswordCost, conf.Limits.CommentsPerSecond = 16, 0.01
	if err := conf.Validate(); err != nil {
		t.Errorf("the limits themselves: %v", err)
	}
}
