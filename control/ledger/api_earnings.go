package ledger

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

func (a *API) board(ctx *fasthttp.RequestCtx, b Board) {
	b.Period = Period(ctx.QueryArgs().Peek("period"))
	switch b.Period {
	case "":
		b.Period = PeriodAll
	case PeriodDay, PeriodWeek, PeriodAll:
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "period: day, week or all")
		return
	}
	b.At = a.now()
	if d := string(ctx.QueryArgs().Peek("date")); d != "" {
		t, err := time.Parse("2006-01-02", d)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "date: YYYY-MM-DD")
			return
		}
		b.At = t
	}
	rc, cancel := a.reqContext()
	defer cancel()
	top, err := a.deps.Leaderboard.Top(rc, b, queryInt(ctx, "limit", 10, 1, 100))
	if err != nil {
		a.internal(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"board": b.Key(), "period": b.Period, "standings": top})
}

func (a *API) leaderboardGifters(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	a.board(ctx, Board{StreamID: string(ctx.QueryArgs().Peek("stream_id"))})
}

func (a *API) leaderboardStreamers(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	a.board(ctx, Board{Streamers: true})
}

func (a *API) streamLeaderboard(ctx *fasthttp.RequestCtx, p params, _ caller) {
	a.board(ctx, Board{StreamID: p.get("id")})
}

// EarningsDay is one line of an earnings report.
type EarningsDay struct {
	Day      string `json:"day"`
	StreamID string `json:"stream_id"`
	Gifts    int64  `json:"gifts"`
	Coins    int64  `json:"coins"`
}

// EarningsView is GET /api/v1/earnings.
type EarningsView struct {
	UserID    string        `json:"user_id"`
	Available int64         `json:"available_coins"`
	Held      int64         `json:"held_coins"`
	Value     string        `json:"available_value"`
	Currency  string        `json:"currency"`
	ByDay     []EarningsDay `json:"by_day"`
}

func (a *API) getEarnings(ctx *fasthttp.RequestCtx, _ params, who caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	v := EarningsView{UserID: who.id, Currency: a.conf.Currency}
	var err error
	if v.Available, err = a.l.Balance(rc, Earnings(who.id)); err == nil {
		v.Held, err = a.l.Balance(rc, Hold(who.id))
	}
	if err != nil {
		a.internal(ctx, err)
		return
	}
	v.Value = a.money(v.Available)
	days := queryInt(ctx, "days", 30, 1, 366)
	v.ByDay, err = a.dailyCredits(rc, Earnings(who.id), days)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}

// dailyCredits returns the gifts credited to an account per UTC day and
// stream over the last days days, newest first, from the daily totals the
// writer keeps (ledger_daily_credits): a report costs one row per day and
// stream whatever the number of gifts.
func (a *API) dailyCredits(rc context.Context, acct AccountID, days int) ([]EarningsDay, error) {
	sinceT := a.now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -(days - 1))
	return readDaily(rc, a.l.db, acct, utcDay(sinceT.UnixMicro()))
}

// CommissionDay is one line of the commission report.
type CommissionDay struct {
	Day        string `json:"day"`
	Gifts      int64  `json:"gifts"`
	Commission int64  `json:"commission_coins"`
	Value      string `json:"commission_value"`
}

func (a *API) commissionReport(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	days, err := a.dailyCredits(rc, Platform, queryInt(ctx, "days", 30, 1, 366))
	if err != nil {
		a.internal(ctx, err)
		return
	}
	byDay := make(map[string]*CommissionDay)
	var order []string
	for _, d := range days {
		c := byDay[d.Day]
		if c == nil {
			c = &CommissionDay{Day: d.Day}
			byDay[d.Day] = c
			order = append(order, d.Day)
		}
		c.Gifts += d.Gifts
		c.Commission += d.Coins
	}
	out := make([]CommissionDay, 0, len(order))
	var total int64
	for _, day := range order {
		c := byDay[day]
		c.Value = a.money(c.Commission)
		total += c.Commission
		out = append(out, *c)
	}
	bal, err := a.l.Balance(rc, Platform)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"by_day": out, "period_total_coins": total, "platform_balance_coins": bal, "currency": a.conf.Currency})
}

type commissionBody struct {
	Percent *int `json:"percent"`
}

func (a *API) setCommission(ctx *fasthttp.RequestCtx, p params, who caller) {
	var b commissionBody
	if !decode(ctx, &b) {
		return
	}
	if b.Percent == nil || *b.Percent < 0 || *b.Percent > 100 {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "percent: 0..100")
		return
	}
	rc, cancel := a.reqContext()
	defer cancel()
	db := a.l.db
	_, err := db.ExecContext(rc, db.Rebind(`INSERT INTO ledger_commissions (streamer_id, percent, updated_by, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (streamer_id) DO UPDATE SET percent = excluded.percent, updated_by = excluded.updated_by, updated_at = excluded.updated_at`),
		p.get("id"), *b.Percent, who.id, a.now().UnixMicro())
	if err != nil {
		a.internal(ctx, err)
		return
	}
	if err := a.l.SyncCommitted(rc); err != nil {
		a.internal(ctx, err)
		return
	}
	a.catalog.invalidate()
	a.log.Info("streamer commission set", "streamer", p.get("id"), "percent", *b.Percent, "by", who.id)
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"streamer_id": p.get("id"), "percent": *b.Percent})
}

func (a *API) invariants(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	r, err := a.l.Invariants(rc)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	status := fasthttp.StatusOK
	if !r.OK {
		status = fasthttp.StatusInternalServerError
		a.log.Error("ledger invariants violated", "report", r.Err())
	}
	writeJSON(ctx, status, r)
}

func (a *API) rebuildLeaderboards(ctx *fasthttp.RequestCtx, _ params, who caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	if err := Rebuild(rc, a.l.db, a.deps.Leaderboard); err != nil {
		a.internal(ctx, err)
		return
	}
	a.log.Info("leaderboards rebuilt", "by", who.id)
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"rebuilt": true})
}

// WithdrawalView is a withdrawal.
type WithdrawalView struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Coins     int64     `json:"coins"`
	Amount    string    `json:"amount"`
	Currency  string    `json:"currency"`
	Status    string    `json:"status"` // pending, posted, voided
	CreatedAt time.Time `json:"created_at"`
	DecidedBy string    `json:"decided_by,omitempty"`
}

type withdrawalBody struct {
	Coins int64 `json:"coins"`
}

// createWithdrawal moves earnings into a hold (phase one); an admin posts
// or voids it.
func (a *API) createWithdrawal(ctx *fasthttp.RequestCtx, _ params, who caller) {
	id, ok := a.beginIdempotent(ctx, who)
	if !ok {
		return
	}
	defer id.release()
	rc, cancel := a.reqContext()
	defer cancel()
	var b withdrawalBody
	if err := decodeStrict(ctx.PostBody(), &b); err != nil {
		if !a.replayStored(ctx, rc, id) {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		}
		return
	}
	if b.Coins < a.conf.MinWithdrawalCoins {
		if !a.replayStored(ctx, rc, id) {
			writeError(ctx, fasthttp.StatusBadRequest, "bad_amount", "coins: at least "+strconv.FormatInt(a.conf.MinWithdrawalCoins, 10))
		}
		return
	}
	now := a.now()
	w := WithdrawalView{ID: newID("wd_", now), UserID: who.id, Coins: b.Coins, Amount: a.money(b.Coins), Currency: a.conf.Currency, Status: "pending", CreatedAt: now.UTC()}
	r, err := a.l.Transfer(rc, TransferRequest{
		IdempotencyKey: id.key, Fingerprint: id.fingerprint, Kind: TransferWithdrawal, Actor: who.id,
		Legs: []Leg{{From: Earnings(who.id), To: Hold(who.id), Amount: b.Coins}},
		Meta: `{"withdrawal_id":` + strconv.Quote(w.ID) + `}`,
		effects: []effect{{query: "INSERT INTO ledger_withdrawals (id, user_id, coins, amount_minor, currency, status, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
			args: []any{w.ID, who.id, b.Coins, a.conf.currencyMinor(b.Coins), a.conf.Currency, now.UnixMicro()}}},
		Respond: func(Receipt) (int, []byte) { return fasthttp.StatusCreated, mustJSON(w) },
	})
	if err != nil {
		a.transferError(ctx, err)
		return
	}
	if !r.Replayed {
		a.log.Info("withdrawal requested", "withdrawal", w.ID, "user", who.id, "coins", b.Coins)
	}
	writeRaw(ctx, r.Status, r.Body)
}

func (a *API) loadWithdrawal(rc context.Context, wid string) (WithdrawalView, error) {
	db := a.l.db
	var w WithdrawalView
	var minor, at int64
	err := db.QueryRowContext(rc, db.Rebind("SELECT id, user_id, coins, amount_minor, currency, status, decided_by, created_at FROM ledger_withdrawals WHERE id = ?"), wid).
		Scan(&w.ID, &w.UserID, &w.Coins, &minor, &w.Currency, &w.Status, &w.DecidedBy, &at)
	w.Amount = a.money(w.Coins)
	w.CreatedAt = time.UnixMicro(at).UTC()
	return w, err
}

func (a *API) listWithdrawalsWhere(ctx *fasthttp.RequestCtx, where string, args ...any) {
	rc, cancel := a.reqContext()
	defer cancel()
	db := a.l.db
	rows, err := db.QueryContext(rc, db.Rebind("SELECT id, user_id, coins, currency, status, decided_by, created_at FROM ledger_withdrawals WHERE "+where+" ORDER BY created_at DESC LIMIT 200"), args...)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	defer rows.Close()
	out := []WithdrawalView{}
	for rows.Next() {
		var w WithdrawalView
		var at int64
		if err := rows.Scan(&w.ID, &w.UserID, &w.Coins, &w.Currency, &w.Status, &w.DecidedBy, &at); err != nil {
			a.internal(ctx, err)
			return
		}
		w.Amount, w.CreatedAt = a.money(w.Coins), time.UnixMicro(at).UTC()
		out = append(out, w)
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"withdrawals": out})
}

func (a *API) listWithdrawals(ctx *fasthttp.RequestCtx, _ params, who caller) {
	a.listWithdrawalsWhere(ctx, "user_id = ?", who.id)
}

func (a *API) adminListWithdrawals(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	st := string(ctx.QueryArgs().Peek("status"))
	if st == "" {
		st = "pending"
	}
	a.listWithdrawalsWhere(ctx, "status = ?", st)
}

func (a *API) approveWithdrawal(ctx *fasthttp.RequestCtx, p params, who caller) {
	a.settleWithdrawal(ctx, p.get("id"), who, true)
}

func (a *API) rejectWithdrawal(ctx *fasthttp.RequestCtx, p params, who caller) {
	a.settleWithdrawal(ctx, p.get("id"), who, false)
}

// settleWithdrawal is phase two: the hold is posted out (approve) or voided
// back into earnings (reject). The settlement's key is the withdrawal, so it
// happens once, and approve-after-reject (or the reverse) is refused.
func (a *API) settleWithdrawal(ctx *fasthttp.RequestCtx, wid string, who caller, approve bool) {
	id, ok := a.beginIdempotent(ctx, who)
	if !ok {
		return
	}
	defer id.release()
	rc, cancel := a.reqContext()
	defer cancel()
	w, err := a.loadWithdrawal(rc, wid)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(ctx, fasthttp.StatusNotFound, "withdrawal_not_found", "no withdrawal "+strconv.Quote(wid))
		return
	}
	if err != nil {
		a.internal(ctx, err)
		return
	}
	action, status, kind := "reject", "voided", TransferWithdrawalVoid
	leg := Leg{From: Hold(w.UserID), To: Earnings(w.UserID), Amount: w.Coins}
	if approve {
		action, status, kind = "approve", "posted", TransferWithdrawalPost
		leg = Leg{From: Hold(w.UserID), To: Payout, Amount: w.Coins}
	}
	now := a.now()
	r, err := a.l.Transfer(rc, TransferRequest{
		IdempotencyKey: "withdrawal:" + w.ID + ":settle", Fingerprint: action, Kind: kind, Actor: w.UserID,
		Legs: []Leg{leg}, Meta: `{"withdrawal_id":` + strconv.Quote(w.ID) + `,"by":` + strconv.Quote(who.id) + `}`,
		effects: []effect{{query: "UPDATE ledger_withdrawals SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND status = 'pending'",
			args: []any{status, who.id, now.UnixMicro(), w.ID}, mustAffect: true}},
		Respond: func(Receipt) (int, []byte) {
			v := w
			v.Status, v.DecidedBy = status, who.id
			return fasthttp.StatusOK, mustJSON(v)
		},
	})
	switch {
	case errors.Is(err, ErrIdempotencyConflict), errors.Is(err, ErrEffectFailed):
		// w.Status was read before the settlement that won a race: it
		// may still say pending.
		writeError(ctx, fasthttp.StatusConflict, "withdrawal_already_decided", "this withdrawal was already decided")
		return
	case err != nil:
		a.transferError(ctx, err)
		return
	}
	if !r.Replayed {
		a.log.Info("withdrawal settled", "withdrawal", w.ID, "status", status, "by", who.id, "coins", w.Coins)
	}
	writeRaw(ctx, r.Status, r.Body)
}

func sortByTimeDesc(t []TransactionView) {
	sort.SliceStable(t, func(i, j int) bool { return t[i].At.After(t[j].At) })
}
