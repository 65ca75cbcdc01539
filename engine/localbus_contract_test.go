package engine_test

import (
	"testing"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/bustest"
)

// TestLocalBusContract runs the bus contract against the in-process bus.
func TestLocalBusContract(t *testing.T) {
	bustest.Run(t, func(t *testing.T) engine.Bus {
		b := engine.NewLocalBus()
		t.Cleanup(func() { b.Close() })
		return b
	})
}
