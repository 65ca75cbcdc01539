// Command lebench runs the benches without the rest of LiveEngine, the same
// as `liveengine bench`: lebench SCENARIO [flags].
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/liveengine/liveengine/bench"
)

func main() {
	if err := bench.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lebench:", err)
		if errors.Is(err, bench.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
