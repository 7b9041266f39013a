package fuse

import (
	"container/list"
	"context"
	"sync"
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
type chunkCache struct {
	fetch func(ctx context.Context, fid string, off, n int64) ([]byte, error)
	max   int64

	mu struct {
		sync.Mutex
		chunks map[chunkKey]*chunk
		lru    list.List // of *chunk, loaded ones only, most recent first
		bytes  int64     // sum of len(data) of the loaded chunks
	}
	prefetch chan struct{} // semaphore of read-ahead fetches
}

type chunkKey struct {
	fid  string
	size uint64 // chunkSize or pieceSize
	idx  uint64
}

// bigKey is the key of the chunkSize piece of fid holding byte pos.
func bigKey(fid string, pos uint64) chunkKey { return chunkKey{fid, chunkSize, pos / chunkSize} }

// chunk is a cached or in-flight piece of a needle. data and err are set
// before done is closed and never change after.
type chunk struct {
	key  chunkKey
	done chan struct{}
	data []byte
	err  error
	elem *list.Element // in lru once loaded; nil before and after eviction
}

func newChunkCache(max int64, fetch func(ctx context.Context, fid string, off, n int64) ([]byte, error)) *chunkCache {
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
		if in >= uint64(len(ch.data)) {
			return n, nil // the needle ends before pos
		}
		k := copy(dst[n:], ch.data[in:])
		n += k
		if uint64(len(ch.data)) < key.size && in+uint64(k) >= uint64(len(ch.data)) {
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
// cache and other readers: it must not be modified. It stays valid after
// the piece is evicted (a chunk's data never changes).
func (c *chunkCache) view(ctx, fetchCtx context.Context, fid string, off uint64, n int, small bool) (b []byte, ok bool, err error) {
	key := c.keyFor(fid, off, small)
	in := off - key.idx*key.size
	if in+uint64(n) > key.size {
		return nil, false, nil
	}
	ch, err := c.get(ctx, fetchCtx, key)
	if err != nil {
		return nil, true, err
	}
	if in >= uint64(len(ch.data)) {
		return nil, true, nil // the needle ends before off
	}
	return ch.data[in:min(in+uint64(n), uint64(len(ch.data)))], true, nil
}

// has reports whether key is cached or being fetched.
func (c *chunkCache) has(key chunkKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.mu.chunks[key]
	return ok
}

// get returns chunk key, loaded: from the cache (a hit), by waiting for a
// fetch in flight (a hit: someone, often read-ahead, asked first), or by
// fetching it (a miss). A failed fetch is not cached.
func (c *chunkCache) get(ctx, fetchCtx context.Context, key chunkKey) (*chunk, error) {
	c.mu.Lock()
	ch, ok := c.mu.chunks[key]
	if ok {
		if ch.elem != nil {
			c.mu.lru.MoveToFront(ch.elem)
		}
		c.mu.Unlock()
		mountCacheHits.Inc()
		select {
		case <-ch.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if ch.err != nil {
			return nil, ch.err
		}
		return ch, nil
	}
	ch = &chunk{key: key, done: make(chan struct{})}
	c.mu.chunks[key] = ch
	c.mu.Unlock()
	mountCacheMisses.Inc()
	c.load(fetchCtx, ch)
	if ch.err != nil {
		return nil, ch.err
	}
	return ch, nil
}

// load fetches ch and publishes the outcome.
func (c *chunkCache) load(ctx context.Context, ch *chunk) {
	data, err := c.fetch(ctx, ch.key.fid, int64(ch.key.idx*ch.key.size), int64(ch.key.size))
	c.mu.Lock()
	if err != nil {
		ch.err = err
		delete(c.mu.chunks, ch.key)
	} else {
		ch.data = data
		ch.elem = c.mu.lru.PushFront(ch)
		c.mu.bytes += int64(len(data))
		c.evictLocked()
	}
	c.mu.Unlock()
	close(ch.done)
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
	ch := &chunk{key: key, done: make(chan struct{})}
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
