//go:build linux && cgo

package transcode

/*
#include <malloc.h>
*/
import "C"

// releaseCMemory hands the C heap's free pages back to the system. A job's
// end frees tens of MB of codec buffers spread over glibc's per-thread
// arenas (x264 and the decoder run many threads); without a trim those
// pages stay resident until a later job happens to reuse them.
func releaseCMemory() { C.malloc_trim(0) }
