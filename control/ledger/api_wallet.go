package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/liveengine/liveengine/control/ledger/payment"
	"github.com/valyala/fasthttp"
)

// WalletView is GET /api/v1/wallet.
type WalletView struct {
	UserID   string `json:"user_id"`
	Coins    int64  `json:"coins"`
	Value    string `json:"value"`
	Currency string `json:"currency"`
}

func (a *API) money(coins int64) string {
	return payment.FormatAmount(a.conf.currencyMinor(coins), a.conf.CurrencyDecimals)
}

func (a *API) getWallet(ctx *fasthttp.RequestCtx, _ params, who caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	b, err := a.l.Balance(rc, Wallet(who.id))
	if err != nil {
		a.internal(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, WalletView{UserID: who.id, Coins: b, Value: a.money(b), Currency: a.conf.Currency})
}

// TransactionView is one line of a wallet statement.
type TransactionView struct {
	TransferID string    `json:"transfer_id"`
	Kind       string    `json:"kind"`
	Account    string    `json:"account"`
	Counter    string    `json:"counterparty"`
	Amount     int64     `json:"amount"` // positive = credit, negative = debit
	StreamID   string    `json:"stream_id,omitempty"`
	At         time.Time `json:"at"`
}

func (a *API) listTransactions(ctx *fasthttp.RequestCtx, _ params, who caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	limit := queryInt(ctx, "limit", 50, 1, 500)
	db := a.l.db
	var out []TransactionView
	for _, acct := range []AccountID{Wallet(who.id), Earnings(who.id), Hold(who.id)} {
		// Each side walks its own (account, created_at) index of the
		// transfers' first legs backwards and stops at the limit (the debit
		// side scans on SQLite, which has no debit index: see schema.go);
		// an OR over both would sort every transfer of a busy account (a
		// streamer's millions of gifts). A user's accounts are always in a
		// transfer's first leg (schema.go); every leg of a transfer found
		// that touches acct is a line, the later legs first.
		rows, err := db.QueryContext(rc, db.Rebind(`SELECT id, kind, legs, stream_id, created_at FROM (
			SELECT * FROM (SELECT id, kind, legs, stream_id, created_at FROM ledger_transfers WHERE credit = ? ORDER BY created_at DESC, id DESC LIMIT ?) AS c
			UNION ALL
			SELECT * FROM (SELECT id, kind, legs, stream_id, created_at FROM ledger_transfers WHERE debit = ? ORDER BY created_at DESC, id DESC LIMIT ?) AS d
			) AS e ORDER BY created_at DESC, id DESC LIMIT ?`), string(acct), limit, string(acct), limit, limit)
		if err != nil {
			a.internal(ctx, err)
			return
		}
		for rows.Next() {
			var id, kind, raw, stream string
			var at int64
			if err := rows.Scan(&id, &kind, &raw, &stream, &at); err != nil {
				rows.Close()
				a.internal(ctx, err)
				return
			}
			legs, err := parseLegs(raw)
			if err != nil {
				rows.Close()
				a.internal(ctx, fmt.Errorf("transfer %s: %w", id, err))
				return
			}
			for k := len(legs) - 1; k >= 0; k-- {
				l := legs[k]
				t := TransactionView{TransferID: id, Kind: kind, Account: string(acct), Amount: l.Amount, StreamID: stream, At: time.UnixMicro(at).UTC()}
				switch acct {
				case l.From:
					t.Amount, t.Counter = -l.Amount, string(l.To)
				case l.To:
					t.Counter = string(l.From)
				default:
					continue
				}
				out = append(out, t)
			}
		}
		if err := rows.Close(); err != nil {
			a.internal(ctx, err)
			return
		}
	}
	sortByTimeDesc(out)
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"transactions": out})
}

// OrderView is a top-up order.
type OrderView struct {
	OrderID  string           `json:"order_id"`
	Provider string           `json:"provider"`
	Status   string           `json:"status"`
	Coins    int64            `json:"coins"`
	Amount   string           `json:"amount"`
	Currency string           `json:"currency"`
	Checkout payment.Checkout `json:"checkout"`
}

type topupBody struct {
	Coins    int64  `json:"coins"`
	Provider string `json:"provider"`
}

// createTopup creates an order with a provider; no coin moves until the
// provider's verified webhook says the payment completed.
func (a *API) createTopup(ctx *fasthttp.RequestCtx, _ params, who caller) {
	id, ok := a.beginIdempotent(ctx, who)
	if !ok {
		return
	}
	defer id.release()
	rc, cancel := a.reqContext()
	defer cancel()
	if a.replayOrder(ctx, rc, id) {
		return
	}
	var b topupBody
	if !decode(ctx, &b) {
		return
	}
	if b.Provider == "" {
		b.Provider = "sandbox"
	}
	p, ok := a.providers[b.Provider]
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "unknown_provider", "payment provider "+strconv.Quote(b.Provider)+" is not enabled")
		return
	}
	if b.Coins < a.conf.MinTopupCoins || b.Coins > a.conf.MaxTopupCoins {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_amount", "coins: "+strconv.FormatInt(a.conf.MinTopupCoins, 10)+".."+strconv.FormatInt(a.conf.MaxTopupCoins, 10))
		return
	}
	o := payment.Order{ID: newID("ord_", a.now()), UserID: who.id, Coins: b.Coins, AmountMinor: a.conf.priceMinor(b.Coins), Currency: a.conf.Currency}
	co, err := p.CreateCheckout(rc, o)
	if err != nil {
		a.log.Error("checkout failed", "provider", p.Name(), "err", err)
		writeError(ctx, fasthttp.StatusBadGateway, "provider_error", "the payment provider refused the order; retry with the same Idempotency-Key")
		return
	}
	view := OrderView{OrderID: o.ID, Provider: p.Name(), Status: "pending", Coins: o.Coins, Amount: payment.FormatAmount(o.AmountMinor, a.conf.CurrencyDecimals), Currency: o.Currency, Checkout: co}
	body := mustJSON(view)
	db := a.l.db
	_, err = db.ExecContext(rc, db.Rebind(`INSERT INTO ledger_orders (id, provider, user_id, coins, amount_minor, currency, status, provider_ref, idem_key, fingerprint, resp_body, created_at)
		VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`), o.ID, p.Name(), who.id, o.Coins, o.AmountMinor, o.Currency, co.ProviderRef, id.key, id.fingerprint, string(body), a.now().UnixMicro())
	if err != nil {
		if isUnique(err) && a.replayOrder(ctx, rc, id) { // raced by another node
			return
		}
		a.internal(ctx, err)
		return
	}
	if err := a.l.SyncCommitted(rc); err != nil {
		// Committed but maybe not durable: the client retries with the
		// same key and gets this order back.
		a.internal(ctx, err)
		return
	}
	a.log.Info("topup order created", "order", o.ID, "user", who.id, "provider", p.Name(), "coins", o.Coins)
	writeRaw(ctx, fasthttp.StatusCreated, body)
}

func (a *API) replayOrder(ctx *fasthttp.RequestCtx, rc context.Context, id idem) bool {
	db := a.l.db
	var fp, body string
	err := db.QueryRowContext(rc, db.Rebind("SELECT fingerprint, resp_body FROM ledger_orders WHERE idem_key = ?"), id.key).Scan(&fp, &body)
	if err != nil {
		return false
	}
	if fp != id.fingerprint {
		writeError(ctx, fasthttp.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
		return true
	}
	// As replayStored: the order may not be durable yet.
	if err := a.l.SyncCommitted(rc); err != nil {
		a.internal(ctx, err)
		return true
	}
	writeRaw(ctx, fasthttp.StatusCreated, []byte(body))
	return true
}

type order struct {
	id, provider, userID, currency, status string
	coins, amountMinor                     int64
}

var errNoOrder = errors.New("no such order")

func (a *API) loadOrder(rc context.Context, orderID string) (order, error) {
	db := a.l.db
	var o order
	err := db.QueryRowContext(rc, db.Rebind("SELECT id, provider, user_id, coins, amount_minor, currency, status FROM ledger_orders WHERE id = ?"), orderID).
		Scan(&o.id, &o.provider, &o.userID, &o.coins, &o.amountMinor, &o.currency, &o.status)
	if errors.Is(err, sql.ErrNoRows) {
		return o, errNoOrder
	}
	return o, err
}

func (a *API) orderView(o order) OrderView {
	return OrderView{OrderID: o.id, Provider: o.provider, Status: o.status, Coins: o.coins, Amount: payment.FormatAmount(o.amountMinor, a.conf.CurrencyDecimals), Currency: o.currency}
}

func (a *API) getTopup(ctx *fasthttp.RequestCtx, p params, who caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	o, err := a.loadOrder(rc, p.get("id"))
	if errors.Is(err, errNoOrder) || (err == nil && o.userID != who.id && !who.admin()) {
		writeError(ctx, fasthttp.StatusNotFound, "order_not_found", "no such order")
		return
	}
	if err != nil {
		a.internal(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, a.orderView(o))
}

// webhook receives a provider's event. Only a verified "completed" event
// for a known pending order of the same amount credits coins, and only
// once: the credit's idempotency key is the order, whatever the event id.
func (a *API) webhook(ctx *fasthttp.RequestCtx, p params, _ caller) {
	prov, ok := a.providers[p.get("provider")]
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "unknown_provider", "no such payment provider")
		return
	}
	status, v := a.processWebhook(prov, func(k string) string { return string(ctx.Request.Header.Peek(k)) }, ctx.PostBody())
	if e, ok := v.(apiError); ok {
		writeError(ctx, status, e.Error.Code, e.Error.Message)
		return
	}
	writeJSON(ctx, status, v)
}

func errBody(code, msg string) apiError {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	return e
}

// WebhookResult answers a processed webhook.
type WebhookResult struct {
	EventID  string `json:"event_id"`
	OrderID  string `json:"order_id,omitempty"`
	Credited bool   `json:"credited"`
	Ignored  bool   `json:"ignored,omitempty"`
	Status   string `json:"status,omitempty"`
}

func (a *API) processWebhook(prov payment.Provider, header func(string) string, body []byte) (int, any) {
	ev, err := prov.VerifyWebhook(header, body, a.now())
	switch {
	case errors.Is(err, payment.ErrBadSignature), errors.Is(err, payment.ErrStale):
		a.log.Warn("webhook rejected", "provider", prov.Name(), "err", err)
		return fasthttp.StatusUnauthorized, errBody("invalid_signature", err.Error())
	case err != nil:
		a.log.Warn("webhook malformed", "provider", prov.Name(), "err", err)
		return fasthttp.StatusBadRequest, errBody("bad_event", err.Error())
	}
	if !ev.Completed {
		return fasthttp.StatusOK, WebhookResult{EventID: ev.ID, Ignored: true}
	}
	rc, cancel := a.reqContext()
	defer cancel()
	o, err := a.loadOrder(rc, ev.OrderID)
	if errors.Is(err, errNoOrder) || (err == nil && o.provider != prov.Name()) {
		a.log.Warn("webhook for unknown order", "provider", prov.Name(), "order", ev.OrderID, "event", ev.ID)
		return fasthttp.StatusUnprocessableEntity, errBody("unknown_order", "no order "+strconv.Quote(ev.OrderID)+" with this provider")
	}
	if err != nil {
		a.log.Error("webhook order lookup", "err", err)
		return fasthttp.StatusInternalServerError, errBody("internal", "retry later")
	}
	if ev.AmountMinor != o.amountMinor || ev.Currency != o.currency {
		a.log.Error("webhook amount mismatch; not credited", "order", o.id, "event", ev.ID, "want", o.amountMinor, "got", ev.AmountMinor, "currency", ev.Currency)
		return fasthttp.StatusUnprocessableEntity, errBody("amount_mismatch", "captured amount differs from the order")
	}
	r, err := a.l.Transfer(rc, TransferRequest{
		IdempotencyKey: "topup:" + o.id, Kind: TransferTopup, Actor: o.userID, Fingerprint: "topup:" + o.id,
		Legs: []Leg{{From: Clearing(prov.Name()), To: Wallet(o.userID), Amount: o.coins}},
		Meta: `{"order_id":` + strconv.Quote(o.id) + `,"event_id":` + strconv.Quote(ev.ID) + `}`,
		effects: []effect{{query: "UPDATE ledger_orders SET status = 'completed', completed_at = ? WHERE id = ? AND status = 'pending'",
			args: []any{a.now().UnixMicro(), o.id}, mustAffect: true}},
	})
	if err != nil {
		a.log.Error("topup credit failed", "order", o.id, "err", err)
		return fasthttp.StatusInternalServerError, errBody("internal", "retry later")
	}
	if !r.Replayed {
		a.log.Info("topup credited", "order", o.id, "user", o.userID, "coins", o.coins, "event", ev.ID)
	}
	return fasthttp.StatusOK, WebhookResult{EventID: ev.ID, OrderID: o.id, Credited: !r.Replayed, Status: "completed"}
}

// sandboxComplete plays the sandbox provider: it signs a "completed" event
// for the order and feeds it to the webhook path, as the real provider would.
func (a *API) sandboxComplete(ctx *fasthttp.RequestCtx, p params, who caller) {
	prov, ok := a.providers["sandbox"].(*payment.Sandbox)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "sandbox_disabled", "the sandbox payment provider is disabled")
		return
	}
	rc, cancel := a.reqContext()
	defer cancel()
	o, err := a.loadOrder(rc, p.get("id"))
	if errors.Is(err, errNoOrder) || (err == nil && ((o.userID != who.id && !who.admin()) || o.provider != "sandbox")) {
		writeError(ctx, fasthttp.StatusNotFound, "order_not_found", "no such sandbox order")
		return
	}
	if err != nil {
		a.internal(ctx, err)
		return
	}
	body := payment.NewEventBody("SBEV-"+o.id, o.id, o.amountMinor, o.currency, a.conf.CurrencyDecimals)
	h := prov.SignHeaders(body, a.now())
	status, v := a.processWebhook(prov, func(k string) string { return h[k] }, body)
	if e, ok := v.(apiError); ok {
		writeError(ctx, status, e.Error.Code, e.Error.Message)
		return
	}
	o.status = "completed"
	writeJSON(ctx, status, a.orderView(o))
}

func queryInt(ctx *fasthttp.RequestCtx, name string, def, lo, hi int) int {
	v, err := strconv.Atoi(string(ctx.QueryArgs().Peek(name)))
	if err != nil {
		return def
	}
	return max(lo, min(hi, v))
}
