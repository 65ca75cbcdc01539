package payment

import (
	"context"
	"strconv"
	"time"
)

// PayPal header names (PayPal-style; the signature here is HMAC-SHA256 over
// "TIME.BODY" with the shared webhook secret).
const (
	HeaderPayPalTime = "Paypal-Transmission-Time"
	HeaderPayPalSig  = "Paypal-Transmission-Sig"
	HeaderSandboxTS  = "X-Sandbox-Timestamp"
	HeaderSandboxSig = "X-Sandbox-Signature"
)

// HMACConfig configures a webhook-signing provider.
type HMACConfig struct {
	// Secret is the shared webhook secret.
	Secret string `yaml:"secret"`
	// ReplayWindow is how far a webhook's timestamp may be from now.
	ReplayWindow time.Duration `yaml:"replay_window"`
	// CheckoutURL is the buyer-facing payment page (ORDER is replaced).
	CheckoutURL string `yaml:"checkout_url"`
	// Decimals is the currency's minor-unit digits (2 for USD).
	Decimals int `yaml:"decimals"`
}

// PayPal is a PayPal-style provider: the buyer pays on the provider's page
// and the provider calls our webhook with a signed capture event.
type PayPal struct{ conf HMACConfig }

// NewPayPal returns the PayPal-style provider.
func NewPayPal(conf HMACConfig) *PayPal { return &PayPal{conf: conf} }

var _ Provider = (*PayPal)(nil)

// Name implements Provider.
func (p *PayPal) Name() string { return "paypal" }

// CreateCheckout implements Provider; the order id travels as custom_id.
func (p *PayPal) CreateCheckout(_ context.Context, o Order) (Checkout, error) {
	return Checkout{ProviderRef: "PP-" + o.ID, URL: replaceOrder(p.conf.CheckoutURL, o.ID)}, nil
}

// VerifyWebhook implements Provider.
func (p *PayPal) VerifyWebhook(header func(string) string, body []byte, now time.Time) (Event, error) {
	if err := verify([]byte(p.conf.Secret), p.conf.ReplayWindow, header(HeaderPayPalTime), header(HeaderPayPalSig), body, now); err != nil {
		return Event{}, err
	}
	return ParseEvent(body, p.conf.Decimals)
}

// SignHeaders returns the headers a PayPal-style webhook carries (for
// tests and the benchmark, which play the provider).
func (p *PayPal) SignHeaders(body []byte, now time.Time) map[string]string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return map[string]string{HeaderPayPalTime: ts, HeaderPayPalSig: Signature([]byte(p.conf.Secret), ts, body)}
}

// Sandbox is the development provider: its checkout URL is our own
// /api/v1/payments/sandbox/orders/ID/complete, which emits a signed webhook
// exactly like a real provider would.
type Sandbox struct{ conf HMACConfig }

// NewSandbox returns the sandbox provider.
func NewSandbox(conf HMACConfig) *Sandbox { return &Sandbox{conf: conf} }

var _ Provider = (*Sandbox)(nil)

// Name implements Provider.
func (s *Sandbox) Name() string { return "sandbox" }

// CreateCheckout implements Provider.
func (s *Sandbox) CreateCheckout(_ context.Context, o Order) (Checkout, error) {
	return Checkout{ProviderRef: "SB-" + o.ID, URL: "/api/v1/payments/sandbox/orders/" + o.ID + "/complete"}, nil
}

// VerifyWebhook implements Provider.
func (s *Sandbox) VerifyWebhook(header func(string) string, body []byte, now time.Time) (Event, error) {
	if err := verify([]byte(s.conf.Secret), s.conf.ReplayWindow, header(HeaderSandboxTS), header(HeaderSandboxSig), body, now); err != nil {
		return Event{}, err
	}
	return ParseEvent(body, s.conf.Decimals)
}

// SignHeaders returns the headers of a signed sandbox webhook.
func (s *Sandbox) SignHeaders(body []byte, now time.Time) map[string]string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return map[string]string{HeaderSandboxTS: ts, HeaderSandboxSig: Signature([]byte(s.conf.Secret), ts, body)}
}

func replaceOrder(tmpl, id string) string {
	if tmpl == "" {
		return "https://www.sandbox.paypal.com/checkoutnow?token=" + id
	}
	out := ""
	for {
		i := indexOf(tmpl, "ORDER")
		if i < 0 {
			return out + tmpl
		}
		out += tmpl[:i] + id
		tmpl = tmpl[i+5:]
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
