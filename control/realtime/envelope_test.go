package realtime

import (
	"bytes"
	"encoding/json"
	"testing"
)

// appenderEvent encodes itself through an alias without methods, so its
// AppendJSON is json.Marshal's by construction; ok=false when Name is
// "decline".
type appenderEvent struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

type plainEvent appenderEvent

func (e appenderEvent) AppendJSON(b []byte) ([]byte, bool) {
	if e.Name == "decline" {
		return b, false
	}
	j, _ := json.Marshal(plainEvent(e))
	return append(b, j...), true
}

// FuzzAppendEnvelope: whenever the fast envelope is taken it is
// json.Marshal's byte for byte; it declines refs, errors, escapes and
// data that declines.
func FuzzAppendEnvelope(f *testing.F) {
	f.Add("gift", "abc123", "", "rose", false)
	f.Add("gift", "", "r1", "decline", true)
	f.Add("g<i>ft", "é", "", "\x00", false)
	f.Fuzz(func(t *testing.T, typ, room, ref, name string, withErr bool) {
		env := Envelope{Type: typ, Room: room, Ref: ref, Data: appenderEvent{Name: name, N: 7}}
		if withErr {
			env.Error = &EnvelopeError{Code: "x", Message: "y"}
		}
		want, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendEnvelope([]byte("prefix"), env)
		if !ok {
			if string(got) != "prefix" {
				t.Fatalf("declined, buffer now %q", got)
			}
			if ref == "" && !withErr && name != "decline" && plainJSONString(typ) && plainJSONString(room) {
				t.Fatalf("declined a plain envelope %+v", env)
			}
			return
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("appendEnvelope %s, json.Marshal %s", got, want)
		}
	})
}

func TestAppendEnvelopeDeclines(t *testing.T) {
	var nilEvent *appenderEvent
	for _, env := range []Envelope{
		{Type: "gift", Data: nilEvent},         // json.Marshal writes null
		{Type: "gift", Data: map[string]int{}}, // not an appender
		{Type: "gift"},
	} {
		if b, ok := appendEnvelope(nil, env); ok {
			t.Errorf("%+v: fast path taken: %s", env, b)
		}
	}
	b, ok := appendEnvelope(nil, Envelope{Type: "gift", Data: &appenderEvent{Name: "p"}})
	if want, _ := json.Marshal(Envelope{Type: "gift", Data: &appenderEvent{Name: "p"}}); !ok || !bytes.Equal(b, want) {
		t.Errorf("pointer data: %v %s, want %s", ok, b, want)
	}
}
