package fuse

import (
	"encoding/binary"
	"sync"
)

// codeWrite is FUSE_WRITE.
const codeWrite = 16

// writeOrder makes a READ wait for the WRITEs of the same file that the
// kernel queued before it and that the mount has not finished serving.
//
// The kernel writes through its page cache: it copies a write's bytes into
// the file's cached pages, releases those that are then whole, and only
// then sends the WRITE. A page dropped in between (an open without
// FOPEN_KEEP_CACHE, an invalidation after a change elsewhere, memory
// pressure) and read again reaches the mount as a READ that the kernel
// queued after the WRITE. Served first (the mount serves requests
// concurrently, and a WRITE may wait for buffer room), it gives the page
// its old bytes, or zeros past the old end of the file, and the kernel
// caches them: later reads see them although the write succeeded. So a
// READ waits for the earlier overlapping WRITEs to be stored first.
//
// The serve loop notes each WRITE as it takes it from the device, one
// reader at a time, so that every WRITE queued before a READ is noted by
// the time the READ is served; request ids grow in queue order.
type writeOrder struct {
	mu      sync.Mutex
	changed sync.Cond // on mu: a noted write was served
	writes  []queuedWrite
}

type queuedWrite struct{ unique, node, off, end uint64 }

func newWriteOrder() *writeOrder {
	w := &writeOrder{}
	w.changed.L = &w.mu
	return w
}

// order is a request id without the resend mark: a request the kernel
// sends again keeps its place.
func order(unique uint64) uint64 { return unique &^ uniqueResend }

// note records req if it is a WRITE and returns its id (0 if it is not).
func (w *writeOrder) note(req []byte) uint64 {
	if w == nil || len(req) < inHeaderSize+20 || binary.LittleEndian.Uint32(req[4:]) != codeWrite {
		return 0
	}
	q := queuedWrite{
		unique: order(binary.LittleEndian.Uint64(req[8:])),
		node:   binary.LittleEndian.Uint64(req[16:]),
		off:    binary.LittleEndian.Uint64(req[inHeaderSize+8:]),
	}
	q.end = q.off + uint64(binary.LittleEndian.Uint32(req[inHeaderSize+16:]))
	w.mu.Lock()
	w.writes = append(w.writes, q)
	w.mu.Unlock()
	return q.unique
}

// served forgets the WRITE note returned unique for, once it was served.
func (w *writeOrder) served(unique uint64) {
	if w == nil || unique == 0 {
		return
	}
	w.mu.Lock()
	for i, q := range w.writes {
		if q.unique == unique {
			w.writes = append(w.writes[:i], w.writes[i+1:]...)
			break
		}
	}
	w.mu.Unlock()
	w.changed.Broadcast()
}

// wait returns once no WRITE of node queued before request unique and
// overlapping [off, end) is left to serve.
func (w *writeOrder) wait(unique, node, off, end uint64) {
	if w == nil {
		return
	}
	unique = order(unique)
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.blockedLocked(unique, node, off, end) {
		w.changed.Wait()
	}
}

func (w *writeOrder) blockedLocked(unique, node, off, end uint64) bool {
	for _, q := range w.writes {
		if q.node == node && q.unique < unique && q.off < end && off < q.end {
			return true
		}
	}
	return false
}
