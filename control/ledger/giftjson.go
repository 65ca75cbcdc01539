package ledger

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The gift request and its receipt are the hot path's only JSON. Both have
// a hand-written fast path that must agree byte for byte (receipt) or value
// for value (request) with encoding/json, which handles every case the
// fast path declines; FuzzSendGiftBody and FuzzGiftReceiptJSON check it.

// parseSendGift decodes a send-gift body as json.Unmarshal into sendGiftBody
// would, without reflection for the usual {"gift_id":"rose","quantity":2}.
func parseSendGift(body []byte) (sendGiftBody, error) {
	if b, ok := fastSendGift(body); ok {
		return b, nil
	}
	var b sendGiftBody
	err := json.Unmarshal(body, &b)
	return b, err
}

// fastSendGift accepts only an object whose keys are exactly "gift_id"
// (a string without escapes or non-ASCII) and "quantity" (a plain integer
// of at most 18 digits), in any order, repeated or not, with JSON
// whitespace; anything else (other keys, escapes, null, floats, case
// variants json.Unmarshal would also match) reports !ok.
func fastSendGift(s []byte) (sendGiftBody, bool) {
	var b sendGiftBody
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return b, false
	}
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == '}' {
		return b, skipWS(s, i+1) == len(s)
	}
	for {
		key, j, ok := plainString(s, i)
		if !ok {
			return b, false
		}
		i = skipWS(s, j)
		if i >= len(s) || s[i] != ':' {
			return b, false
		}
		i = skipWS(s, i+1)
		switch key {
		case "gift_id":
			v, j, ok := plainString(s, i)
			if !ok {
				return b, false
			}
			b.GiftID, i = v, j
		case "quantity":
			j := i
			if j < len(s) && s[j] == '-' {
				j++
			}
			d := j
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if n := j - d; n == 0 || n > 18 || (n > 1 && s[d] == '0') {
				return b, false
			}
			q, err := strconv.ParseInt(string(s[i:j]), 10, 64)
			if err != nil {
				return b, false
			}
			b.Quantity, i = q, j
		default:
			return b, false
		}
		i = skipWS(s, i)
		if i >= len(s) {
			return b, false
		}
		switch s[i] {
		case ',':
			i = skipWS(s, i+1)
		case '}':
			return b, skipWS(s, i+1) == len(s)
		default:
			return b, false
		}
	}
}

func skipWS(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at s[i] made only of printable ASCII
// other than '"' and '\\'; it returns the text and the index after it.
func plainString(s []byte, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return string(s[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", i, false
		}
	}
	return "", i, false
}

// appendJSON appends r exactly as json.Marshal(r) writes it.
func (r GiftReceipt) appendJSON(b []byte) []byte {
	b = append(b, `{"transfer_id":`...)
	b = appendJSONString(b, r.TransferID)
	b = append(b, `,"stream_id":`...)
	b = appendJSONString(b, r.StreamID)
	b = append(b, `,"streamer_id":`...)
	b = appendJSONString(b, r.StreamerID)
	b = append(b, `,"gift_id":`...)
	b = appendJSONString(b, r.GiftID)
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, r.Quantity, 10)
	b = append(b, `,"coins":`...)
	b = strconv.AppendInt(b, r.Coins, 10)
	b = append(b, `,"balance":`...)
	b = strconv.AppendInt(b, r.Balance, 10)
	b = append(b, `,"created_at":`...)
	// MarshalJSON's text without its allocation.
	b = append(b, '"')
	b, err := r.CreatedAt.AppendText(b)
	if err != nil { // a year outside 0..9999: let encoding/json say so
		return append(b[:0], mustJSON(r)...)
	}
	return append(b, '"', '}')
}

// appendJSONString appends s as json.Marshal quotes it (which also escapes
// <, > and &).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendJSON appends e exactly as json.Marshal(e) writes it, for the
// realtime hub, which encodes a gift event into every room message
// (realtime.JSONAppender; encoding/json's reflection was ~3.5 µs per gift).
// ok is false, and b unchanged, when encoding/json must do it (a time
// outside years 0..9999).
func (e GiftEvent) AppendJSON(b []byte) ([]byte, bool) {
	n := len(b)
	b = append(b, `{"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"stream_id":`...)
	b = appendJSONString(b, e.StreamID)
	b = append(b, `,"sender_id":`...)
	b = appendJSONString(b, e.SenderID)
	b = append(b, `,"streamer_id":`...)
	b = appendJSONString(b, e.StreamerID)
	b = append(b, `,"gift_id":`...)
	b = appendJSONString(b, e.GiftID)
	b = append(b, `,"gift_name":`...)
	b = appendJSONString(b, e.GiftName)
	b = append(b, `,"animation_url":`...)
	b = appendJSONString(b, e.AnimationURL)
	b = append(b, `,"tier":`...)
	b = strconv.AppendInt(b, int64(e.Tier), 10)
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, e.Quantity, 10)
	b = append(b, `,"coins":`...)
	b = strconv.AppendInt(b, e.Coins, 10)
	b = append(b, `,"transfer_id":`...)
	b = appendJSONString(b, e.TransferID)
	b = append(b, `,"at":"`...)
	out, err := e.At.AppendText(b)
	if err != nil { // AppendText answers nil then
		return b[:n], false
	}
	return append(out, '"', '}'), true
}
