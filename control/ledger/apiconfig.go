package ledger

import (
	"fmt"
	"time"

	"github.com/liveengine/liveengine/control/ledger/payment"
)

// APIConfig configures the money API (YAML section "wallet").
type APIConfig struct {
	// CommissionPercent is the platform's default share of a gift, 0..100;
	// an admin can override it per streamer.
	CommissionPercent int `yaml:"commission_percent"`
	// CoinsPerUnit is how many coins make one currency unit (100 coins =
	// 1.00 USD by default), for top-up prices and earnings in currency.
	CoinsPerUnit int64 `yaml:"coins_per_unit"`
	// Currency is the ISO code of prices and payouts.
	Currency string `yaml:"currency"`
	// CurrencyDecimals is the number of minor-unit digits of Currency.
	CurrencyDecimals int `yaml:"currency_decimals"`
	// MinTopupCoins and MaxTopupCoins bound one top-up order.
	MinTopupCoins int64 `yaml:"min_topup_coins"`
	MaxTopupCoins int64 `yaml:"max_topup_coins"`
	// MinWithdrawalCoins is the smallest withdrawal.
	MinWithdrawalCoins int64 `yaml:"min_withdrawal_coins"`
	// MaxGiftQuantity bounds how many of one gift one request sends.
	MaxGiftQuantity int64 `yaml:"max_gift_quantity"`
	// CatalogTTL is how long gift prices and commission overrides are
	// cached (other control nodes see admin changes after it).
	CatalogTTL time.Duration `yaml:"catalog_ttl"`
	// RequestTimeout bounds one money request.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// Sandbox is the development payment provider; disable in production.
	Sandbox ProviderConfig `yaml:"sandbox"`
	// PayPal is the PayPal-style provider.
	PayPal ProviderConfig `yaml:"paypal"`
}

// ProviderConfig enables a payment provider.
type ProviderConfig struct {
	Enabled            bool `yaml:"enabled"`
	payment.HMACConfig `yaml:",inline"`
}

// DefaultAPIConfig returns the money API defaults.
func DefaultAPIConfig() APIConfig {
	return APIConfig{
		CommissionPercent: 30, CoinsPerUnit: 100, Currency: "USD", CurrencyDecimals: 2,
		MinTopupCoins: 100, MaxTopupCoins: 10_000_000, MinWithdrawalCoins: 1000, MaxGiftQuantity: 100,
		CatalogTTL: 5 * time.Second, RequestTimeout: 30 * time.Second,
		Sandbox: ProviderConfig{Enabled: true, HMACConfig: payment.HMACConfig{Secret: "sandbox-secret", ReplayWindow: 5 * time.Minute, Decimals: 2}},
		PayPal:  ProviderConfig{Enabled: false, HMACConfig: payment.HMACConfig{ReplayWindow: 5 * time.Minute, Decimals: 2}},
	}
}

// Validate checks the configuration; errors name the key.
func (c APIConfig) Validate() error {
	switch {
	case c.CommissionPercent < 0 || c.CommissionPercent > 100:
		return fmt.Errorf("wallet.commission_percent: %d not in 0..100", c.CommissionPercent)
	case c.CoinsPerUnit < 1:
		return fmt.Errorf("wallet.coins_per_unit: %d must be positive", c.CoinsPerUnit)
	case len(c.Currency) != 3:
		return fmt.Errorf("wallet.currency: %q is not an ISO 4217 code", c.Currency)
	case c.CurrencyDecimals < 0 || c.CurrencyDecimals > 4:
		return fmt.Errorf("wallet.currency_decimals: %d not in 0..4", c.CurrencyDecimals)
	case c.MinTopupCoins < 1 || c.MaxTopupCoins < c.MinTopupCoins:
		return fmt.Errorf("wallet.min_topup_coins/max_topup_coins: %d..%d is empty", c.MinTopupCoins, c.MaxTopupCoins)
	case c.MaxTopupCoins > MaxAmount:
		// A larger order would be paid and then never credited: the
		// ledger refuses a leg above MaxAmount.
		return fmt.Errorf("wallet.max_topup_coins: %d is above the ledger's %d per transfer", c.MaxTopupCoins, int64(MaxAmount))
	case c.MinWithdrawalCoins < 1:
		return fmt.Errorf("wallet.min_withdrawal_coins: %d must be positive", c.MinWithdrawalCoins)
	case c.MaxGiftQuantity < 1:
		return fmt.Errorf("wallet.max_gift_quantity: %d must be positive", c.MaxGiftQuantity)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("wallet.request_timeout: %v must be positive", c.RequestTimeout)
	case c.Sandbox.Enabled && c.Sandbox.Secret == "":
		return fmt.Errorf("wallet.sandbox.secret: empty")
	case c.PayPal.Enabled && len(c.PayPal.Secret) < 16:
		return fmt.Errorf("wallet.paypal.secret: must be at least 16 bytes")
	case c.PayPal.Enabled && c.PayPal.ReplayWindow <= 0:
		return fmt.Errorf("wallet.paypal.replay_window: %v must be positive", c.PayPal.ReplayWindow)
	}
	return nil
}

// Providers returns the enabled payment providers.
func (c APIConfig) Providers() []payment.Provider {
	var ps []payment.Provider
	if c.Sandbox.Enabled {
		h := c.Sandbox.HMACConfig
		h.Decimals = c.CurrencyDecimals
		ps = append(ps, payment.NewSandbox(h))
	}
	if c.PayPal.Enabled {
		h := c.PayPal.HMACConfig
		h.Decimals = c.CurrencyDecimals
		ps = append(ps, payment.NewPayPal(h))
	}
	return ps
}

// currencyMinor converts coins to currency minor units, rounding down (a
// payout never exceeds the coins' value).
func (c APIConfig) currencyMinor(coins int64) int64 {
	m := int64(1)
	for i := 0; i < c.CurrencyDecimals; i++ {
		m *= 10
	}
	// Whole units and the rest apart: coins * m overflowed int64 for
	// large amounts with 4 decimals (10^15 coins: 10^19).
	return coins/c.CoinsPerUnit*m + coins%c.CoinsPerUnit*m/c.CoinsPerUnit
}

// priceMinor is what coins cost, rounding up (the buyer never pays less
// than the coins' value).
func (c APIConfig) priceMinor(coins int64) int64 {
	m := int64(1)
	for i := 0; i < c.CurrencyDecimals; i++ {
		m *= 10
	}
	// As currencyMinor, without the overflow: a top-up of 10^15 coins with
	// 4 decimals was priced at -8446744073709.5515.
	return coins/c.CoinsPerUnit*m + (coins%c.CoinsPerUnit*m+c.CoinsPerUnit-1)/c.CoinsPerUnit
}
