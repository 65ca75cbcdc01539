package bench

import (
	"encoding/json"
	"testing"
)

func TestParseGiftReceipt(t *testing.T) {
	b, _ := json.Marshal(giftResult{TransferID: "tr_01J9", Coins: 30, Balance: 70})
	tr, coins, err := parseGiftReceipt(b)
	if err != nil || string(tr) != "tr_01J9" || coins != 30 {
		t.Fatalf("%s: %q %d %v", b, tr, coins, err)
	}
	for _, bad := range []string{`{}`, `{"transfer_id":""}`, `{"transfer_id":"x"}`, `{"transfer_id":"x","coins":"7"}`, `{"transfer_id":"x","coins":}`} {
		if _, _, err := parseGiftReceipt([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

// FuzzParseGiftReceipt: any bytes give an error or a non-empty transfer id
// and a non-negative coin count.
func FuzzParseGiftReceipt(f *testing.F) {
	f.Add([]byte(`{"transfer_id":"tr_1","coins":10,"balance":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, coins, err := parseGiftReceipt(b)
		if err == nil && (len(tr) == 0 || coins < 0) {
			t.Fatalf("%q: %q %d", b, tr, coins)
		}
	})
}
