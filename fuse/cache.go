package fuse

import (
	"bytes"
	"container/list"
	"context"
	"sync"
	"unsafe"
)

// Read path tunables.
const (
	// chunkSize is the piece of a needle fetched and cached at once for a
	// sequential reader: the largest needle the mount writes, so read-ahead
	// costs one request per needle.
	chunkSize = maxNeedle
	// pieceSize is the piece fetched for a reader that jumps around: a
	// volume server checks a needle block by block, so a small range
	// costs the disk only the blocks it covers, and a random reader
	// should not pay for 4 MiB to read 4 KiB. A multiple of the volume
	// server's checksum block.
	pieceSize       = 128 << 10
	chunkCacheBytes = 64 << 20 // chunk cache bound per mount
	readAhead       = 16 << 20 // how far ahead of a sequential reader chunks are fetched
	prefetchLimit   = 4        // chunk fetches in flight for read-ahead per mount
)

// chunkCache keeps recently read pieces of needles in memory: the piece
// {fid, size, i} is bytes [i*size, (i+1)*size) of needle fid (fewer at the
// needle's end), size being chunkSize for sequential readers and pieceSize
// for random ones. A random read first looks for the whole chunk around
// it, so what read-ahead fetched serves it too. Needles are immutable and their ids never reused, so a
// cached chunk is never stale: what a file shows is decided by its slice
// list, which the file keeps fresh (close-to-open, change events), not by
// the cache. Concurrent readers of a chunk being fetched wait for that one
// fetch. Memory is bounded by max (least recently used chunks go first);
// chunks being fetched are not counted until they arrive. Safe for
// concurrent use.
//
// The buffers of whole chunks are used again: a fresh 4 MiB buffer costs
// its zeroing and, while the Go heap grows, a page fault per 4 KiB, which
// together took a third of the mount's CPU time in a cold sequential read
// (docs/mount.md). So a chunk counts its users: the cache itself while it
// holds the chunk, and each reader between get and release. The last
// release of an evicted chunk puts its buffer on a short free list, from
// which the next fetch of a whole chunk reads the response body. A buffer
// is never reused while anything can still read it.
type chunkCache struct {
	fetch func(ctx context.Context, fid string, off, n int64, buf []byte) ([]byte, error)
	max   int64

	mu struct {
		sync.Mutex
		chunks map[chunkKey]*chunk
		lru    list.List // of *chunk, loaded ones only, most recent first
		bytes  int64     // sum of len(data) of the loaded chunks
		free   [][]byte  // buffers of cap chunkSize no chunk uses, at most maxFreeBuffers
	}
	prefetch chan struct{} // semaphore of read-ahead fetches
}

// maxFreeBuffers bounds the free list of whole-chunk buffers: enough for
// the read-ahead fetches in flight and a reader's chunk.
const maxFreeBuffers = prefetchLimit + 2

type chunkKey struct {
	fid  string
	size uint64 // chunkSize or pieceSize
	idx  uint64
}

// bigKey is the key of the chunkSize piece of fid holding byte pos.
func bigKey(fid string, pos uint64) chunkKey { return chunkKey{fid, chunkSize, pos / chunkSize} }

// chunk is a cached or in-flight piece of a needle. data and err are set
// before done is closed and never change after, until the buffer is
// recycled (see chunkCache): data may be read only while holding a
// reference.
type chunk struct {
	key  chunkKey
	done chan struct{}
	data []byte
	err  error
	elem *list.Element // in lru once loaded; nil before and after eviction

	// Guarded by chunkCache.mu.
	users   int    // the cache while it holds the chunk, plus each reader's reference
	buf     []byte // the free-list buffer data lies in, to recycle; nil if data is its own
	evicted bool   // out of the cache (or its fetch failed): the last release recycles buf
}

func newChunkCache(max int64, fetch func(ctx context.Context, fid string, off, n int64, buf []byte) ([]byte, error)) *chunkCache {
	c := &chunkCache{fetch: fetch, max: max, prefetch: make(chan struct{}, prefetchLimit)}
	c.mu.chunks = make(map[chunkKey]*chunk)
	return c
}

// read copies bytes of needle fid starting at off into dst and returns how
// many it copied: len(dst), or fewer where the needle ends. Missing bytes
// are fetched in whole chunks, or in small pieces when small is set (a
// random reader). fetchCtx is the context of fetches started here (other
// readers may wait for them).
func (c *chunkCache) read(ctx, fetchCtx context.Context, fid string, off uint64, dst []byte, small bool) (int, error) {
	n := 0
	for n < len(dst) {
		pos := off + uint64(n)
		key := c.keyFor(fid, pos, small)
		ch, err := c.get(ctx, fetchCtx, key)
		if err != nil {
			return n, err
		}
		in := pos - key.idx*key.size
		size := uint64(len(ch.data))
		k := 0
		if in < size {
			k = copy(dst[n:], ch.data[in:])
		}
		c.release(ch)
		if in >= size {
			return n, nil // the needle ends before pos
		}
		n += k
		if size < key.size && in+uint64(k) >= size {
			return n, nil // the last piece of the needle
		}
	}
	return n, nil
}

// keyFor is the piece of needle fid that holds byte pos, as read and view
// fetch it: the whole chunk, or for a small (random) read a small piece
// unless the chunk is cached or being fetched already.
func (c *chunkCache) keyFor(fid string, pos uint64, small bool) chunkKey {
	key := bigKey(fid, pos)
	if small && !c.has(key) {
		key = chunkKey{fid, pieceSize, pos / pieceSize}
	}
	return key
}

// view returns bytes [off, off+n) of needle fid as a slice of the cached
// piece that holds them, fetching the piece as read would (whole chunks,
// or small pieces when small is set); fewer than n bytes where the needle
// ends. ok is false, and nothing is fetched, when the range spans two
// pieces: then the caller copies with read. The slice is shared with the
// cache and other readers: it must not be modified, and it is valid only
// until release is called (its buffer may then hold another chunk).
// release is never nil and must be called exactly once when ok is true and
// err nil; it may be called again harmlessly.
func (c *chunkCache) view(ctx, fetchCtx context.Context, fid string, off uint64, n int, small bool) (b []byte, release func(), ok bool, err error) {
	key := c.keyFor(fid, off, small)
	in := off - key.idx*key.size
	if in+uint64(n) > key.size {
		return nil, nop, false, nil
	}
	ch, err := c.get(ctx, fetchCtx, key)
	if err != nil {
		return nil, nop, true, err
	}
	var once sync.Once
	release = func() { once.Do(func() { c.release(ch) }) }
	if in >= uint64(len(ch.data)) {
		return nil, release, true, nil // the needle ends before off
	}
	return ch.data[in:min(in+uint64(n), uint64(len(ch.data)))], release, true, nil
}

func nop() {}

// has reports whether key is cached or being fetched.
func (c *chunkCache) has(key chunkKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.mu.chunks[key]
	return ok
}

// get returns chunk key, loaded, with a reference the caller must give
// back with release: from the cache (a hit), by waiting for a fetch in
// flight (a hit: someone, often read-ahead, asked first), or by fetching
// it (a miss). A failed fetch is not cached.
func (c *chunkCache) get(ctx, fetchCtx context.Context, key chunkKey) (*chunk, error) {
	c.mu.Lock()
	ch, ok := c.mu.chunks[key]
	if ok {
		if ch.elem != nil {
			c.mu.lru.MoveToFront(ch.elem)
		}
		ch.users++
		c.mu.Unlock()
		mountCacheHits.Inc()
		select {
		case <-ch.done:
		case <-ctx.Done():
			c.release(ch)
			return nil, ctx.Err()
		}
		if ch.err != nil {
			c.release(ch)
			return nil, ch.err
		}
		return ch, nil
	}
	ch = &chunk{key: key, done: make(chan struct{}), users: 1}
	c.mu.chunks[key] = ch
	c.mu.Unlock()
	mountCacheMisses.Inc()
	c.load(fetchCtx, ch)
	if ch.err != nil {
		c.release(ch)
		return nil, ch.err
	}
	return ch, nil
}

// release gives back a reference get handed out. The last one of a chunk
// out of the cache recycles its buffer.
func (c *chunkCache) release(ch *chunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch.users--
	c.recycleLocked(ch)
}

// recycleLocked puts ch's buffer on the free list once nothing uses ch.
func (c *chunkCache) recycleLocked(ch *chunk) {
	if ch.users > 0 || !ch.evicted || ch.buf == nil {
		return
	}
	if ch.users < 0 {
		panic("fuse: chunk released more often than taken")
	}
	c.putBufLocked(ch.buf)
	ch.buf, ch.data = nil, nil
}

func (c *chunkCache) putBufLocked(b []byte) {
	if len(c.mu.free) < maxFreeBuffers {
		c.mu.free = append(c.mu.free, b[:0])
	}
}

// load fetches ch and publishes the outcome. A whole chunk is read into a
// buffer from the free list when there is one; one shorter than half a
// chunk is copied out of it, which gives the buffer back at once. The
// cache holds a reference to a loaded chunk until it evicts it.
func (c *chunkCache) load(ctx context.Context, ch *chunk) {
	var buf []byte
	if ch.key.size == chunkSize {
		c.mu.Lock()
		if n := len(c.mu.free); n > 0 {
			buf = c.mu.free[n-1]
			c.mu.free = c.mu.free[:n-1]
		}
		c.mu.Unlock()
		if buf == nil {
			buf = make([]byte, 0, chunkSize)
		}
	}
	data, err := c.fetch(ctx, ch.key.fid, int64(ch.key.idx*ch.key.size), int64(ch.key.size), buf)
	inBuf := buf != nil && err == nil && within(data, buf)
	if inBuf && len(data) < chunkSize/2 {
		// A short needle (or its end): the cache counts the bytes it
		// holds, not the 4 MiB buffer, so keep only a copy of them.
		data, inBuf = bytes.Clone(data), false
	}
	c.mu.Lock()
	if buf != nil && !inBuf {
		c.putBufLocked(buf)
	}
	if err != nil {
		ch.err = err
		ch.evicted = true
		delete(c.mu.chunks, ch.key)
	} else {
		ch.data = data
		if inBuf {
			ch.buf = buf
		}
		ch.users++ // the cache's own
		ch.elem = c.mu.lru.PushFront(ch)
		c.mu.bytes += int64(len(data))
		c.evictLocked()
	}
	c.mu.Unlock()
	close(ch.done)
}

// within reports whether b lies in the array of buf (up to its capacity).
func within(b, buf []byte) bool {
	if cap(b) == 0 || cap(buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p < lo+uintptr(cap(buf))
}

// evictLocked drops least recently used chunks until the cache fits.
func (c *chunkCache) evictLocked() {
	for c.mu.bytes > c.max {
		e := c.mu.lru.Back()
		if e == nil {
			return
		}
		ch := e.Value.(*chunk)
		c.mu.lru.Remove(e)
		ch.elem = nil
		delete(c.mu.chunks, ch.key)
		c.mu.bytes -= int64(len(ch.data))
		ch.evicted = true
		ch.users-- // the cache's own
		c.recycleLocked(ch)
	}
}

// startPrefetch fetches chunk key in the background unless it is cached or
// in flight, or too many read-ahead fetches run already (read-ahead is a
// guess: it never queues). It reports whether the chunk is cached, in
// flight or now being fetched; false means no fetch could start. Errors
// are dropped: the reader that needs the chunk fetches it again and
// reports the error.
func (c *chunkCache) startPrefetch(ctx context.Context, key chunkKey) bool {
	c.mu.Lock()
	if _, ok := c.mu.chunks[key]; ok {
		c.mu.Unlock()
		return true
	}
	select {
	case c.prefetch <- struct{}{}:
	default:
		c.mu.Unlock()
		return false
	}
	ch := &chunk{key: key, done: make(chan struct{})} // no reader: only the cache will hold it
	c.mu.chunks[key] = ch
	c.mu.Unlock()
	go func() {
		defer func() { <-c.prefetch }()
		c.load(ctx, ch)
	}()
	return true
}

// cachedBytes returns the bytes the loaded chunks hold.
func (c *chunkCache) cachedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.bytes
}
