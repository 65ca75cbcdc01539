package redisbus

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
)

// FuzzDecodeEvent feeds arbitrary stream entries to the event decoder: it
// must return an event or an ErrBadRecord, never panic, and what it returns
// must survive a round trip through AppendEvent's encoding.
func FuzzDecodeEvent(f *testing.F) {
	good, _ := json.Marshal(engine.Event{Kind: engine.EventPublishStarted, StreamID: "s", Time: time.Unix(1, 0).UTC(), Data: map[string]string{"a": "b"}})
	for _, s := range []string{string(good), "", "{}", `{"kind":""}`, `{"kind":"x","time":"nope"}`, "null", `{"kind":"k","data":{"a":1}}`, "\xff"} {
		f.Add("1-0", s)
	}
	f.Fuzz(func(t *testing.T, id, raw string) {
		ev, err := decodeEvent(id, map[string]any{"event": raw})
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v is not ErrBadRecord", err)
			}
			return
		}
		if ev.ID != id || ev.Kind == "" {
			t.Fatalf("decoded %+v from id %q", ev, id)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", ev, err)
		}
		ev2, err := decodeEvent(id, map[string]any{"event": string(again)})
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		if !ev2.Time.Equal(ev.Time) {
			t.Fatalf("time changed in round trip: %v vs %v", ev.Time, ev2.Time)
		}
		ev2.Time = ev.Time
		if len(ev.Data) == 0 && len(ev2.Data) == 0 {
			ev2.Data = ev.Data
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("round trip changed %+v into %+v", ev, ev2)
		}
	})
}

// FuzzDecodeRecord feeds arbitrary text to the grant and node decoders.
func FuzzDecodeRecord(f *testing.F) {
	g, _ := json.Marshal(engine.Grant{StreamID: "s", UserID: "u", Ladder: "720p", Record: true})
	n, _ := json.Marshal(engine.Node{ID: "engine-1", Streams: 2, CPU: 0.25, Updated: time.Unix(2, 0).UTC()})
	for _, s := range []string{string(g), string(n), "", "{}", "[]", `{"stream_id":1}`, `{"id":"x","cpu":"high"}`, "nul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if g, err := decodeGrant(raw); err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("grant error %v is not ErrBadRecord", err)
			}
		} else if g.StreamID == "" {
			t.Fatalf("grant without stream id accepted: %q", raw)
		}
		if n, err := decodeNode(raw); err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("node error %v is not ErrBadRecord", err)
			}
		} else if n.ID == "" {
			t.Fatalf("node without id accepted: %q", raw)
		}
	})
}

func TestDecodeEventMissingField(t *testing.T) {
	for _, vals := range []map[string]any{nil, {"kind": "node_up"}, {"event": 42}} {
		if _, err := decodeEvent("1-0", vals); !errors.Is(err, ErrBadRecord) {
			t.Fatalf("values %v: err = %v, want ErrBadRecord", vals, err)
		}
	}
}
