package control

import (
	"context"
	"encoding/json"
	"time"

	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/engine"
)

// EventGroup is the consumer group control processes share on the bus's
// lifecycle log: each event is handled by one of them, and a restarted
// process picks up what it missed.
const EventGroup = "control"

// consumeEvents marks streams live and offline from engine lifecycle events.
// Handling is idempotent (see store.MarkLive), because the bus redelivers
// events that were not acknowledged.
func (s *Server) consumeEvents() {
	defer s.wg.Done()
	backoff := time.Second
	for s.ctx.Err() == nil {
		err := s.bus.ConsumeEvents(s.ctx, EventGroup, s.consumerID, s.handleEvent)
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("event consumer stopped; retrying", "err", err, "in", backoff)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (s *Server) handleEvent(ev engine.Event) error {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	var (
		changed bool
		err     error
		status  string
	)
	switch ev.Kind {
	case engine.EventPublishStarted:
		status = store.StatusLive
		changed, err = s.store.MarkLive(ctx, ev.StreamID, ev.NodeID, t)
	case engine.EventPublishStopped:
		status = store.StatusOffline
		changed, err = s.store.MarkOffline(ctx, ev.StreamID, t)
		s.viewersMu.Lock()
		delete(s.viewers, ev.StreamID)
		s.viewersMu.Unlock()
	default:
		return nil
	}
	s.streamInfos.forget(ev.StreamID)
	if err != nil {
		// Not acknowledged: the bus delivers it again.
		s.log.Warn("event not applied", "kind", ev.Kind, "stream", ev.StreamID, "err", err)
		return err
	}
	if changed {
		s.log.Info("stream status", "stream", ev.StreamID, "status", status, "node", ev.NodeID, "event", ev.ID)
		s.publishStatus(ctx, ev.StreamID, status)
	}
	return nil
}

// consumeStats keeps viewer counts: every control process hears every
// sample, tells its own WebSocket clients, and writes the count to the
// store when it changed (so discovery can sort by it).
func (s *Server) consumeStats() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		sub, err := s.bus.Subscribe(s.ctx, engine.TopicStats)
		if err != nil {
			s.log.Warn("stats subscription failed; retrying", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		s.readStats(sub)
		sub.Close()
	}
}

func (s *Server) readStats(sub engine.Subscription) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case msg, ok := <-sub.C():
			if !ok {
				return
			}
			var st engine.Stats
			if err := json.Unmarshal(msg.Payload, &st); err != nil || st.StreamID == "" {
				continue
			}
			s.applyStats(st)
		}
	}
}

func (s *Server) applyStats(st engine.Stats) {
	now := time.Now()
	s.viewersMu.Lock()
	last, seen := s.viewers[st.StreamID]
	// Unchanged counts are rewritten now and then: only one control process
	// handles a stream's stop event (and resets the count), the others must
	// not keep a stale value forever.
	fresh := seen && last.n == st.Viewers && now.Sub(last.at) < 30*time.Second
	if !fresh {
		s.viewers[st.StreamID] = viewerCount{n: st.Viewers, at: now}
	}
	if len(s.viewers) > 100_000 {
		for id, v := range s.viewers {
			if now.Sub(v.at) > time.Minute {
				delete(s.viewers, id)
			}
		}
	}
	s.viewersMu.Unlock()
	if fresh {
		return
	}
	s.hub.DeliverLocal(realtime.RoomTopic(st.StreamID), realtime.Envelope{Type: "viewers", Room: st.StreamID,
		Data: map[string]int{"viewers": st.Viewers}})
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if err := s.store.SetViewers(ctx, st.StreamID, st.Viewers); err != nil {
		s.log.Warn("viewer count not stored", "stream", st.StreamID, "err", err)
	}
}

// viewerCount is the last viewer count written for a stream.
type viewerCount struct {
	n  int
	at time.Time
}
