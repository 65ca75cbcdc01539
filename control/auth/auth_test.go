package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestTokens(t *testing.T) {
	tk, err := NewTokens(secret, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := tk.Issue("u1", "streamer", "s1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tk.Verify(s)
	if err != nil || c.Subject != "u1" || c.Role != "streamer" || c.SessionID != "s1" {
		t.Fatalf("verify: %v %+v", err, c)
	}

	other, _ := NewTokens([]byte(strings.Repeat("x", 32)), time.Minute)
	forged, _, _ := other.Issue("u1", "admin", "")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{Role: "admin", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "u1", Issuer: "liveengine", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, bad := range map[string]string{"forged": forged, "none": none, "garbage": "a.b.c", "empty": "", "tampered": s[:len(s)-2] + "xx"} {
		if _, err := tk.Verify(bad); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}

	expired, _ := NewTokens(secret, -time.Minute)
	old, _, _ := expired.Issue("u1", "viewer", "")
	if _, err := tk.Verify(old); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := NewTokens([]byte("short"), time.Minute); err == nil {
		t.Fatal("short secret accepted")
	}
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(h, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(h, "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Fatal(err)
	}
	if _, err := HashPassword(strings.Repeat("a", 73), bcrypt.MinCost); !errors.Is(err, ErrPasswordTooLong) {
		t.Fatal(err)
	}
}

func FuzzVerify(f *testing.F) {
	tk, _ := NewTokens(secret, time.Minute)
	good, _, _ := tk.Issue("u", "viewer", "")
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := tk.Verify(s)
		if err == nil && (c.Subject == "" || c.Role == "") {
			t.Fatalf("accepted token without subject/role: %q", s)
		}
	})
}

// TestVerifiedCache: a token verified once is answered from memory, but
// still expires, and the cache stays bounded; forged tokens never enter.
func TestVerifiedCache(t *testing.T) {
	tk, err := NewTokens(secret, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := tk.Issue("u1", "viewer", "s1")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if c, err := tk.Verify(s); err != nil || c.Subject != "u1" {
			t.Fatalf("verify: %v %+v", err, c)
		}
	}
	if _, ok := tk.seen.get(s); !ok {
		t.Fatal("a verified token was not remembered")
	}
	if _, err := tk.Verify(s[:len(s)-2] + "xx"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("tampered token after a cached one: %v", err)
	}
	if _, ok := tk.seen.get(s[:len(s)-2] + "xx"); ok {
		t.Fatal("a forged token entered the cache")
	}

	// The remembered claims expire like the token.
	c, _ := tk.seen.get(s)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-leeway - time.Second))
	tk.seen.put(s, c)
	if _, err := tk.Verify(s); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired cached token: %v", err)
	}

	for i := range 40 * verifiedPerShard {
		tk.seen.put(strings.Repeat("t", 8)+string(rune('a'+i%26))+time.Duration(i).String(), c)
	}
	for i := range tk.seen.shards {
		if n := len(tk.seen.shards[i].m); n > verifiedPerShard {
			t.Fatalf("shard %d holds %d tokens, bound %d", i, n, verifiedPerShard)
		}
	}
}
