//go:build !linux

package sfu

// batchSys has no batch send outside Linux: the queue still groups the
// writes of a fan-out, then sends them one by one.
type batchSys struct{}

func (s *batchSys) init(*batchConn) {}

func (s *batchSys) send(b *batchConn, n int) { b.sendOneByOne(n) }

func (s *batchSys) gso() bool { return false }
