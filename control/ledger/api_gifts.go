package ledger

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func (a *API) listGifts(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	rc, cancel := a.reqContext()
	defer cancel()
	gifts, order, _, err := a.catalog.snapshot(rc)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	all := string(ctx.QueryArgs().Peek("all")) == "1"
	out := make([]Gift, 0, len(order))
	for _, id := range order {
		if g := gifts[id]; g.Active || all {
			out = append(out, g)
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"gifts": out})
}

type giftBody struct {
	ID           string  `json:"id"`
	Name         *string `json:"name"`
	Price        *int64  `json:"price"`
	AnimationURL *string `json:"animation_url"`
	Tier         *int    `json:"tier"`
	Active       *bool   `json:"active"`
}

func (b giftBody) apply(g *Gift) error {
	if b.Name != nil {
		g.Name = *b.Name
	}
	if b.Price != nil {
		g.Price = *b.Price
	}
	if b.AnimationURL != nil {
		g.AnimationURL = *b.AnimationURL
	}
	if b.Tier != nil {
		g.Tier = *b.Tier
	}
	if b.Active != nil {
		g.Active = *b.Active
	}
	switch {
	case g.Name == "" || len(g.Name) > 100:
		return errors.New("name: 1..100 characters")
	case g.Price <= 0 || g.Price > 1_000_000_000:
		return errors.New("price: 1..1000000000 coins")
	case g.Tier < 1 || g.Tier > 10:
		return errors.New("tier: 1..10")
	case len(g.AnimationURL) > 500:
		return errors.New("animation_url: at most 500 characters")
	}
	return nil
}

func (a *API) createGift(ctx *fasthttp.RequestCtx, _ params, _ caller) {
	var b giftBody
	if !decode(ctx, &b) {
		return
	}
	g := Gift{ID: b.ID, Tier: 1, Active: true}
	if g.ID == "" {
		g.ID = newID("gift_", a.now())
	}
	if !idPattern.MatchString(g.ID) {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "id: 1..64 of A-Z a-z 0-9 _ . -")
		return
	}
	if err := b.apply(&g); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rc, cancel := a.reqContext()
	defer cancel()
	db := a.l.db
	_, err := db.ExecContext(rc, db.Rebind("INSERT INTO ledger_gifts (id, name, price, animation_url, tier, active, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
		g.ID, g.Name, g.Price, g.AnimationURL, g.Tier, boolInt(g.Active), a.now().UnixMicro())
	if err != nil {
		if isUnique(err) {
			writeError(ctx, fasthttp.StatusConflict, "gift_exists", "a gift with this id exists; use PUT /api/v1/gifts/"+g.ID)
			return
		}
		a.internal(ctx, err)
		return
	}
	if err := a.l.SyncCommitted(rc); err != nil {
		a.internal(ctx, err)
		return
	}
	a.catalog.invalidate()
	a.log.Info("gift created", "gift", g.ID, "price", g.Price)
	writeJSON(ctx, fasthttp.StatusCreated, g)
}

func (a *API) updateGift(ctx *fasthttp.RequestCtx, p params, _ caller) {
	var b giftBody
	if !decode(ctx, &b) {
		return
	}
	rc, cancel := a.reqContext()
	defer cancel()
	a.catalog.invalidate()
	gifts, _, _, err := a.catalog.snapshot(rc)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	g, ok := gifts[p.get("id")]
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "gift_not_found", "no gift "+strconv.Quote(p.get("id")))
		return
	}
	if err := b.apply(&g); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", err.Error())
		return
	}
	db := a.l.db
	if _, err := db.ExecContext(rc, db.Rebind("UPDATE ledger_gifts SET name = ?, price = ?, animation_url = ?, tier = ?, active = ?, updated_at = ? WHERE id = ?"),
		g.Name, g.Price, g.AnimationURL, g.Tier, boolInt(g.Active), a.now().UnixMicro(), g.ID); err != nil {
		a.internal(ctx, err)
		return
	}
	if err := a.l.SyncCommitted(rc); err != nil {
		a.internal(ctx, err)
		return
	}
	a.catalog.invalidate()
	a.log.Info("gift updated", "gift", g.ID, "price", g.Price, "active", g.Active)
	writeJSON(ctx, fasthttp.StatusOK, g)
}

type sendGiftBody struct {
	GiftID   string `json:"gift_id"`
	Quantity int64  `json:"quantity"`
}

// GiftReceipt is the answer to a sent gift (also the stored response).
type GiftReceipt struct {
	TransferID string    `json:"transfer_id"`
	StreamID   string    `json:"stream_id"`
	StreamerID string    `json:"streamer_id"`
	GiftID     string    `json:"gift_id"`
	Quantity   int64     `json:"quantity"`
	Coins      int64     `json:"coins"`
	Balance    int64     `json:"balance"`
	CreatedAt  time.Time `json:"created_at"`
}

// sendGift is the hot path: one atomic transfer viewer -> streamer share +
// platform commission, answered after the group commit.
func (a *API) sendGift(ctx *fasthttp.RequestCtx, p params, who caller) {
	id, ok := a.beginIdempotent(ctx, who)
	if !ok {
		return
	}
	defer id.release()
	rc := a.deadlines.context()
	streamID := p.get("id")
	fail := func(status int, code, msg string) {
		if !a.replayStored(ctx, rc, id) {
			writeError(ctx, status, code, msg)
		}
	}
	b, err := parseSendGift(ctx.PostBody())
	if err != nil {
		fail(fasthttp.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return
	}
	if b.Quantity == 0 {
		b.Quantity = 1
	}
	if b.Quantity < 1 || b.Quantity > a.conf.MaxGiftQuantity {
		fail(fasthttp.StatusBadRequest, "bad_request", fmt.Sprintf("quantity: 1..%d", a.conf.MaxGiftQuantity))
		return
	}
	gifts, _, percents, err := a.catalog.snapshot(rc)
	if err != nil {
		a.internal(ctx, err)
		return
	}
	g, ok := gifts[b.GiftID]
	if !ok || !g.Active {
		fail(fasthttp.StatusNotFound, "gift_not_found", "no active gift "+strconv.Quote(b.GiftID))
		return
	}
	if b.Quantity > MaxAmount/g.Price {
		// price × quantity must not wrap around int64: max_gift_quantity
		// has no upper bound and a price may be 10^9, and a wrapped total
		// once charged 512 coins for 2×10^16 gifts of 10^9. MaxAmount
		// bounds one leg anyway.
		fail(fasthttp.StatusBadRequest, "bad_request", fmt.Sprintf("quantity: at most %d of gift %q (at most %d coins per request)", int64(MaxAmount)/g.Price, g.ID, int64(MaxAmount)))
		return
	}
	owner, live, err := a.deps.Streams.StreamOwner(rc, streamID)
	switch {
	case errors.Is(err, ErrStreamNotFound):
		fail(fasthttp.StatusNotFound, "stream_not_found", "no stream "+strconv.Quote(streamID))
		return
	case err != nil:
		a.internal(ctx, err)
		return
	case !live:
		fail(fasthttp.StatusConflict, "stream_not_live", "gifts can only be sent to a live stream")
		return
	case owner == who.id:
		fail(fasthttp.StatusBadRequest, "self_gift", "you cannot gift your own stream")
		return
	}
	total := g.Price * b.Quantity
	pct, ok := percents[owner]
	if !ok {
		pct = a.conf.CommissionPercent
	}
	commission := total * int64(pct) / 100
	share := total - commission
	wallet := Wallet(who.id)
	legs := make([]Leg, 0, 2)
	if share > 0 {
		legs = append(legs, Leg{From: wallet, To: Earnings(owner), Amount: share})
	}
	if commission > 0 {
		legs = append(legs, Leg{From: wallet, To: Platform, Amount: commission})
	}
	var meta [128]byte // {"gift_id":"rose","quantity":1} in one allocation
	m := strconv.AppendQuote(append(meta[:0], `{"gift_id":`...), g.ID)
	m = append(strconv.AppendInt(append(m, `,"quantity":`...), b.Quantity, 10), '}')
	r, err := a.l.Transfer(rc, TransferRequest{
		IdempotencyKey: id.key, Legs: legs, Kind: TransferGift, Actor: who.id, StreamID: streamID, Fingerprint: id.fingerprint,
		Meta: string(m),
		Respond: func(rc Receipt) (int, []byte) {
			return fasthttp.StatusCreated, GiftReceipt{
				TransferID: rc.TransferID, StreamID: streamID, StreamerID: owner, GiftID: g.ID, Quantity: b.Quantity,
				Coins: total, Balance: rc.Balances[wallet], CreatedAt: rc.CreatedAt.UTC(),
			}.appendJSON(make([]byte, 0, 256))
		},
	})
	if err != nil {
		a.transferError(ctx, err)
		return
	}
	writeRaw(ctx, r.Status, r.Body)
	if r.Replayed {
		return
	}
	ev := GiftEvent{Type: "gift", StreamID: streamID, SenderID: who.id, StreamerID: owner, GiftID: g.ID, GiftName: g.Name,
		AnimationURL: g.AnimationURL, Tier: g.Tier, Quantity: b.Quantity, Coins: total, TransferID: r.TransferID, At: r.CreatedAt, earned: share}
	select {
	case a.events <- ev:
	default:
		a.log.Warn("gift event queue full; leaderboard needs a rebuild", "stream", streamID)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *API) internal(ctx *fasthttp.RequestCtx, err error) {
	a.log.Error("wallet api", "path", string(ctx.Path()), "err", err)
	writeError(ctx, fasthttp.StatusInternalServerError, "internal", "internal error; retry later")
}
