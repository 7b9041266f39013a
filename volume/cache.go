package volume

import (
	"container/list"
	"sync"
)

// needleCache keeps recently read, already verified needles in memory so
// that range reads of one needle (a mount reading a 4 MiB needle in 1 MiB
// pieces, a database reading pages) do not reread and re-checksum it each
// time. Entries are keyed by where the record lies in its file and when it
// was appended, so a newer record of the key, or a vacuum moving it, simply
// misses; nothing needs invalidating. Safe for concurrent use.
type needleCache struct {
	max int64

	mu    sync.Mutex // guards the fields below
	size  int64
	lru   *list.List // of *cacheEntry, most recent first
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	vol      *Volume
	key      uint64
	appendNs uint64
	off      int64
}

type cacheEntry struct {
	k cacheKey
	n *Needle
}

// DefaultCacheBytes bounds the needle cache of a store.
const DefaultCacheBytes = 128 << 20

func newNeedleCache(max int64) *needleCache {
	return &needleCache{max: max, lru: list.New(), items: make(map[cacheKey]*list.Element)}
}

func (c *needleCache) get(k cacheKey) *Needle {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).n
}

// put caches n; needles larger than an eighth of the cache are not kept.
func (c *needleCache) put(k cacheKey, n *Needle) {
	if c == nil || int64(len(n.Data)) > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{k: k, n: n})
	c.size += int64(len(n.Data))
	for c.size > c.max {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.items, e.k)
		c.size -= int64(len(e.n.Data))
	}
}

// dropVolume forgets every entry of v (closed or destroyed).
func (c *needleCache) dropVolume(v *Volume) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if k.vol == v {
			c.lru.Remove(el)
			delete(c.items, k)
			c.size -= int64(len(el.Value.(*cacheEntry).n.Data))
		}
	}
}
