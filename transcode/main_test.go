package transcode

import (
	"os"
	"testing"

	"github.com/asticode/go-astiav"
)

func TestMain(m *testing.M) {
	// libav's own chatter (encoder summaries) drowns the test log.
	astiav.SetLogLevel(astiav.LogLevelError)
	os.Exit(m.Run())
}
