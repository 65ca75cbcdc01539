//go:build race

package transcode

// raceEnabled reports a -race build, whose runtime keeps its own metadata
// (never returned to the system) for every goroutine and sync object.
const raceEnabled = true
