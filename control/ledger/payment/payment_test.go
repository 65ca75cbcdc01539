package payment

import (
	"errors"
	"testing"
	"time"
)

func TestParseAmount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"12.34", 1234, true}, {"5", 500, true}, {"0.5", 50, true}, {"0.05", 5, true},
		{"", 0, false}, {"-1", 0, false}, {"1.234", 0, false}, {"1.", 0, false}, {".5", 0, false},
		{"1e3", 0, false}, {"99999999999999999999", 0, false}, {"1,00", 0, false},
	} {
		got, err := ParseAmount(c.in, 2)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
		if c.ok && FormatAmount(got, 2) != FormatAmount(c.want, 2) {
			t.Errorf("FormatAmount(%d)", got)
		}
	}
	if FormatAmount(5, 2) != "0.05" || FormatAmount(1234, 2) != "12.34" {
		t.Fatal(FormatAmount(5, 2), FormatAmount(1234, 2))
	}
}

func TestVerifyWebhook(t *testing.T) {
	p := NewPayPal(HMACConfig{Secret: "s3cret", ReplayWindow: 5 * time.Minute, Decimals: 2})
	now := time.Unix(1_800_000_000, 0)
	body := NewEventBody("WH-1", "ord_1", 499, "USD", 2)
	h := p.SignHeaders(body, now)
	get := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	ev, err := p.VerifyWebhook(get(h), body, now.Add(time.Minute))
	if err != nil || !ev.Completed || ev.OrderID != "ord_1" || ev.AmountMinor != 499 || ev.ID != "WH-1" {
		t.Fatalf("%+v %v", ev, err)
	}
	if _, err := p.VerifyWebhook(get(h), body, now.Add(10*time.Minute)); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	forged := NewEventBody("WH-1", "ord_1", 99999, "USD", 2)
	if _, err := p.VerifyWebhook(get(h), forged, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged: %v", err)
	}
	other := NewPayPal(HMACConfig{Secret: "other", ReplayWindow: time.Minute, Decimals: 2})
	if _, err := p.VerifyWebhook(get(other.SignHeaders(body, now)), body, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := p.VerifyWebhook(get(map[string]string{}), body, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unsigned: %v", err)
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add(NewEventBody("WH-1", "ord_1", 499, "USD", 2))
	f.Add([]byte(`{"id":"x","event_type":"OTHER"}`))
	f.Add([]byte(`{"id":"x","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"custom_id":"o","amount":{"value":"1.5"}}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEvent(body, 2)
		if err != nil {
			return
		}
		if ev.Completed && (ev.OrderID == "" || ev.AmountMinor < 0) {
			t.Fatalf("accepted bad event %+v", ev)
		}
	})
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"12.34", "0", "0.01", "1.", "-3", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseAmount(s, 2)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("negative %d from %q", v, s)
		}
		back, err := ParseAmount(FormatAmount(v, 2), 2)
		if err != nil || back != v {
			t.Fatalf("round trip %q -> %d -> %q -> %d %v", s, v, FormatAmount(v, 2), back, err)
		}
	})
}

func FuzzVerifyWebhook(f *testing.F) {
	f.Add([]byte(`{}`), "1800000000", "00")
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		p := NewSandbox(HMACConfig{Secret: "k", ReplayWindow: time.Minute, Decimals: 2})
		h := map[string]string{HeaderSandboxTS: ts, HeaderSandboxSig: sig}
		if _, err := p.VerifyWebhook(func(k string) string { return h[k] }, body, time.Unix(1_800_000_000, 0)); err == nil {
			if sig != Signature([]byte("k"), ts, body) {
				t.Fatal("accepted a wrong signature")
			}
		}
	})
}
