//go:build !linux || !cgo

package transcode

// releaseCMemory is a no-op where glibc's malloc_trim is not available.
func releaseCMemory() {}
