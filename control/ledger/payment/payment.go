// Package payment is the boundary to payment providers: a Provider creates a
// checkout for a coin order and verifies the provider's webhooks. Coins are
// credited by the ledger only for a verified "completed" event, exactly once
// per order however often the event is replayed.
package payment

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadSignature means a webhook's signature is missing or wrong.
var ErrBadSignature = errors.New("webhook signature invalid")

// ErrStale means a webhook's timestamp is outside the replay window.
var ErrStale = errors.New("webhook timestamp outside the replay window")

// ErrBadEvent means a webhook body could not be understood.
var ErrBadEvent = errors.New("webhook event malformed")

// Order is a request to buy coins.
type Order struct {
	ID          string
	UserID      string
	Coins       int64
	AmountMinor int64
	Currency    string
}

// Checkout tells the buyer where to pay.
type Checkout struct {
	// ProviderRef is the provider's id for the order.
	ProviderRef string `json:"provider_ref"`
	// URL is where the buyer completes the payment.
	URL string `json:"url"`
}

// Event is a verified webhook event.
type Event struct {
	// ID is the provider's event id.
	ID string
	// Type is the provider's event type.
	Type string
	// Completed is true for a successful capture of the order's payment.
	Completed bool
	// OrderID is our order id, echoed back by the provider.
	OrderID string
	// AmountMinor and Currency are what the provider captured.
	AmountMinor int64
	Currency    string
}

// Provider is a payment provider.
type Provider interface {
	// Name is the provider's URL name (webhooks arrive on
	// /api/v1/payments/webhooks/NAME).
	Name() string
	// CreateCheckout registers the order with the provider.
	CreateCheckout(ctx context.Context, o Order) (Checkout, error)
	// VerifyWebhook authenticates a webhook and parses it. header returns
	// a request header by name.
	VerifyWebhook(header func(string) string, body []byte, now time.Time) (Event, error)
}

// Signature is HMAC-SHA256 over "TIMESTAMP.BODY" in hex: binding the
// timestamp into the MAC makes an old signature useless outside the window.
func Signature(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// verify checks a timestamped HMAC signature.
func verify(secret []byte, window time.Duration, timestamp, sig string, body []byte, now time.Time) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret configured", ErrBadSignature)
	}
	if timestamp == "" || sig == "" {
		return fmt.Errorf("%w: missing timestamp or signature header", ErrBadSignature)
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, timestamp)
	}
	want := Signature(secret, timestamp, body)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(sig))) {
		return ErrBadSignature
	}
	// Checked after the MAC so an attacker learns nothing about the window.
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return fmt.Errorf("%w: %v off", ErrStale, d.Round(time.Second))
	}
	return nil
}

// ParseAmount turns a decimal money string ("12.34", "5", "0.5") into minor
// units with the given number of decimals. It rejects signs, exponents,
// more decimals than allowed, and overflow.
func ParseAmount(s string, decimals int) (int64, error) {
	if s == "" || len(s) > 24 {
		return 0, fmt.Errorf("%w: amount %q", ErrBadEvent, s)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > decimals)) {
		return 0, fmt.Errorf("%w: amount %q", ErrBadEvent, s)
	}
	var v int64
	digits := whole + frac + strings.Repeat("0", decimals-len(frac))
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: amount %q", ErrBadEvent, s)
		}
		if v > (1<<62)/10 {
			return 0, fmt.Errorf("%w: amount %q too large", ErrBadEvent, s)
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

// FormatAmount is the inverse of ParseAmount.
func FormatAmount(minor int64, decimals int) string {
	if decimals == 0 {
		return strconv.FormatInt(minor, 10)
	}
	neg := minor < 0
	if neg {
		minor = -minor
	}
	s := strconv.FormatInt(minor, 10)
	if len(s) <= decimals {
		s = strings.Repeat("0", decimals-len(s)+1) + s
	}
	s = s[:len(s)-decimals] + "." + s[len(s)-decimals:]
	if neg {
		s = "-" + s
	}
	return s
}

// paypalEvent is the subset of a PayPal-style webhook body we read.
type paypalEvent struct {
	ID        string `json:"id"`
	EventType string `json:"event_type"`
	Resource  struct {
		ID       string `json:"id"`
		CustomID string `json:"custom_id"`
		Amount   struct {
			Value        string `json:"value"`
			CurrencyCode string `json:"currency_code"`
		} `json:"amount"`
	} `json:"resource"`
}

// EventCaptureCompleted is the PayPal-style event type of a completed payment.
const EventCaptureCompleted = "PAYMENT.CAPTURE.COMPLETED"

// ParseEvent parses a PayPal-style webhook body (used by both providers).
func ParseEvent(body []byte, decimals int) (Event, error) {
	var pe paypalEvent
	if err := json.Unmarshal(body, &pe); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	if pe.ID == "" || len(pe.ID) > 200 || pe.EventType == "" {
		return Event{}, fmt.Errorf("%w: missing id or event_type", ErrBadEvent)
	}
	ev := Event{ID: pe.ID, Type: pe.EventType, OrderID: pe.Resource.CustomID, Currency: pe.Resource.Amount.CurrencyCode}
	if pe.EventType != EventCaptureCompleted {
		return ev, nil
	}
	if ev.OrderID == "" || len(ev.OrderID) > 200 {
		return Event{}, fmt.Errorf("%w: missing resource.custom_id", ErrBadEvent)
	}
	amt, err := ParseAmount(pe.Resource.Amount.Value, decimals)
	if err != nil {
		return Event{}, err
	}
	ev.AmountMinor = amt
	ev.Completed = true
	return ev, nil
}

// NewEventBody builds a PayPal-style "capture completed" body, as the
// sandbox and tests send it.
func NewEventBody(eventID, orderID string, amountMinor int64, currency string, decimals int) []byte {
	var pe paypalEvent
	pe.ID, pe.EventType = eventID, EventCaptureCompleted
	pe.Resource.ID = "CAP-" + eventID
	pe.Resource.CustomID = orderID
	pe.Resource.Amount.Value = FormatAmount(amountMinor, decimals)
	pe.Resource.Amount.CurrencyCode = currency
	b, _ := json.Marshal(pe)
	return b
}
