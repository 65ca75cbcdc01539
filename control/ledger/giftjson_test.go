package ledger

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestParseSendGift(t *testing.T) {
	for _, tc := range []struct {
		body string
		want sendGiftBody
		err  bool
	}{
		{`{"gift_id":"rose"}`, sendGiftBody{GiftID: "rose"}, false},
		{` { "quantity" : 3 , "gift_id" : "rose" } `, sendGiftBody{GiftID: "rose", Quantity: 3}, false},
		{`{"gift_id":"a","gift_id":"b"}`, sendGiftBody{GiftID: "b"}, false},
		{`{"GIFT_ID":"rose"}`, sendGiftBody{GiftID: "rose"}, false}, // as encoding/json
		{`{"gift_id":"r\u006fse","extra":1}`, sendGiftBody{GiftID: "rose"}, false},
		{`{}`, sendGiftBody{}, false},
		{`{"quantity":-2}`, sendGiftBody{Quantity: -2}, false},
		{`{"quantity":1.5}`, sendGiftBody{}, true},
		{`{"quantity":01}`, sendGiftBody{}, true},
		{`{"quantity":99999999999999999999}`, sendGiftBody{}, true},
		{`{"gift_id":"rose"} x`, sendGiftBody{}, true},
		{`{"gift_id":"rose",}`, sendGiftBody{}, true},
		{``, sendGiftBody{}, true},
		{`[]`, sendGiftBody{}, true},
	} {
		got, err := parseSendGift([]byte(tc.body))
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("%s: %+v, %v; want %+v, error %v", tc.body, got, err, tc.want, tc.err)
		}
	}
}

// FuzzSendGiftBody: whenever the fast path accepts a body, encoding/json
// accepts it too and decodes the same values.
func FuzzSendGiftBody(f *testing.F) {
	for _, s := range []string{`{"gift_id":"rose"}`, `{"gift_id":"rose","quantity":12}`, ` {"quantity": -0 ,"gift_id":""}`, `{"quantity":1e3}`, `{"gift_id":"\u00e9"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := fastSendGift(body)
		if !ok {
			return
		}
		var slow sendGiftBody
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", body, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast %+v, encoding/json %+v", body, fast, slow)
		}
	})
}

// FuzzGiftReceiptJSON: the hand-written receipt is json.Marshal's, byte for
// byte.
func FuzzGiftReceiptJSON(f *testing.F) {
	f.Add("tr_1", "live", "star", "rose", int64(1), int64(10), int64(990), int64(1764115200123456789))
	f.Add("tr_<&>", "é\x00\"\\", "\xff", "", int64(-1), int64(0), int64(1<<62), int64(0))
	f.Fuzz(func(t *testing.T, tr, stream, streamer, gift string, q, coins, bal, nanos int64) {
		r := GiftReceipt{TransferID: tr, StreamID: stream, StreamerID: streamer, GiftID: gift, Quantity: q, Coins: coins, Balance: bal, CreatedAt: time.Unix(0, nanos).UTC()}
		want, err := json.Marshal(r)
		if err != nil {
			return
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON %s, json.Marshal %s", got, want)
		}
	})
}

// FuzzGiftEventJSON: the hand-written gift event is json.Marshal's, byte
// for byte, after whatever the buffer held.
func FuzzGiftEventJSON(f *testing.F) {
	// A year encoding/json refuses: AppendJSON declines and leaves b alone.
	e := GiftEvent{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if b, ok := e.AppendJSON([]byte("x")); ok || string(b) != "x" {
		f.Fatalf("year 10000: %v %q", ok, b)
	}
	f.Add("gift", "live", "u1", "star", "rose", "Rose", "https://x/a.json?a=1&b=<2>", 3, int64(1), int64(10), "tr_1", int64(1764115200123456789))
	f.Add("", "é\x00\"\\", "\xff", "", "", "\u2028", "", -1, int64(-1), int64(0), "", int64(0))
	f.Fuzz(func(t *testing.T, typ, stream, sender, streamer, gift, name, anim string, tier int, q, coins int64, tr string, nanos int64) {
		e := GiftEvent{Type: typ, StreamID: stream, SenderID: sender, StreamerID: streamer, GiftID: gift, GiftName: name, AnimationURL: anim,
			Tier: tier, Quantity: q, Coins: coins, TransferID: tr, At: time.Unix(0, nanos).UTC(), earned: 7}
		want, err := json.Marshal(e)
		if err != nil {
			return
		}
		got, ok := e.AppendJSON([]byte("prefix"))
		if !ok || !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("AppendJSON %v %s, json.Marshal %s", ok, got, want)
		}
	})
}
