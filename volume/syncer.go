package volume

import (
	"fmt"
	"sync"
	"time"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// appended is a batch the writer appended to the file, waiting for the
// syncer to make it durable, index it and acknowledge it. It is not
// changed once handed over.
type appended struct {
	seq     uint64   // 1, 2, ... in file order
	file    vfs.File // the file it was written to
	end     int64    // the file offset after its last record
	size    int64
	lastNs  uint64
	began   time.Time // when its write started
	reqs    []*request
	keys    []uint64 // the index entries of its records, in file order
	entries []entry
}

// pipeline hands appended batches from the writer goroutine to the syncer
// goroutine (see Volume.run). Its methods other than start are called by
// the writer.
type pipeline struct {
	mu   sync.Mutex
	cond sync.Cond // on mu: signalled whenever a field below changes
	// queue holds the batches appended and not yet taken by the syncer.
	queue []*appended
	// batches and bytes count the batches appended and not yet finished
	// (queued or being synced), finished is the seq of the last finished.
	batches     int
	bytes       int64
	finished    uint64
	stopping    bool // the writer stops: the syncer exits once queue is empty
	writerWaits bool // the writer is blocked in waitRoom or drain, or holds a batch (busy)
	// idle gets a token when the syncer finished every batch (see busy).
	idle chan struct{}
}

// start runs the syncer of v; the returned channel is closed when it exits
// (after stop, once every batch is finished).
func (p *pipeline) start(v *Volume) <-chan struct{} {
	p.cond.L = &p.mu
	p.idle = make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.syncLoop()
	}()
	return done
}

// push hands b, whose records are written, to the syncer.
func (p *pipeline) push(b *appended) {
	p.mu.Lock()
	p.queue = append(p.queue, b)
	p.writerWaits = false
	p.batches++
	p.bytes += b.size
	p.cond.Broadcast()
	p.mu.Unlock()
}

// waitRoom waits until the writer may append another batch.
func (p *pipeline) waitRoom() {
	p.mu.Lock()
	for p.batches >= maxUnsyncedBatches || p.bytes >= maxUnsyncedBytes {
		p.writerWaits = true
		p.cond.Wait()
	}
	p.writerWaits = false
	p.mu.Unlock()
}

// busy reports whether an appended batch is not finished yet; if so, idle
// receives a token once every batch is.
func (p *pipeline) busy() bool {
	select {
	case <-p.idle: // from an earlier idle moment
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writerWaits = p.batches > 0
	return p.writerWaits
}

// drain waits until every appended batch is finished.
func (p *pipeline) drain() {
	p.mu.Lock()
	for p.batches > 0 {
		p.writerWaits = true
		p.cond.Wait()
	}
	p.writerWaits = false
	p.mu.Unlock()
}

// finishedSeq returns the seq of the last batch the syncer finished: it and
// every batch before it is indexed, or failed.
func (p *pipeline) finishedSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.finished
}

// stop tells the syncer to exit once it has finished every batch.
func (p *pipeline) stop() {
	p.mu.Lock()
	p.stopping = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// take waits for appended batches and returns all of them, or nil once
// the writer stopped and none is left.
func (p *pipeline) take() []*appended {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 && !p.stopping {
		p.cond.Wait()
	}
	group := p.queue
	p.queue = nil
	return group
}

// done marks group, the last batches taken, finished.
func (p *pipeline) done(group []*appended) {
	p.mu.Lock()
	for _, b := range group {
		p.batches--
		p.bytes -= b.size
	}
	p.finished = group[len(group)-1].seq
	if p.batches == 0 {
		select {
		case p.idle <- struct{}{}:
		default:
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// syncLoop is the syncer goroutine. After a failed fdatasync it fails every
// later batch without syncing again: the failure may have dropped their
// pages too, and a sync that then succeeds proves nothing.
func (v *Volume) syncLoop() {
	var failed error
	for {
		group := v.pipe.take()
		if group == nil {
			return
		}
		if failed == nil {
			failed = v.syncGroup(group)
		} else {
			for _, b := range group {
				for _, r := range b.reqs {
					r.finish(failed)
				}
			}
		}
		v.pipe.done(group)
	}
}

// syncGroup makes the batches of group durable with one fdatasync, then
// indexes them in file order, advances the synced size and acknowledges
// them. On a failed sync the volume turns read-only (the state of the file
// is unknown and the sync is never retried) and every request fails.
func (v *Volume) syncGroup(group []*appended) error {
	// Every batch of a group went to one file: vacuum, the only thing that
	// replaces it, drains the pipeline first.
	if err := group[0].file.Sync(); err != nil {
		err = fmt.Errorf("volume: fdatasync of %s failed, volume is now read-only: %w", v.path(extData), err)
		v.mu.Lock()
		v.setFatalLocked(err)
		v.mu.Unlock()
		for _, b := range group {
			for _, r := range b.reqs {
				r.finish(err)
			}
		}
		return err
	}
	last := group[len(group)-1]
	records := 0
	v.mu.Lock()
	for _, b := range group {
		for i, e := range b.entries {
			v.applyLocked(b.keys[i], e)
		}
		records += len(b.reqs)
	}
	v.mu.size = last.end
	v.mu.lastNs = max(v.mu.lastNs, last.lastNs)
	v.mu.Unlock()
	v.syncs.Add(1)
	v.batched.Add(uint64(records))
	v.commits.record(time.Since(group[0].began), records)
	if f := v.observer.Load(); f != nil {
		(*f)(records)
	}
	for _, b := range group {
		for _, r := range b.reqs {
			r.finish(nil)
		}
	}
	// Durable now: their pages leave the page cache. A reader of this
	// data caches it where it reads it (the mount's page cache and chunk
	// cache, this server's needle cache); kept here too, written data
	// would only grow the page cache, which on a virtual machine makes
	// every later write slower (see docs/storage-core.md).
	start := group[0].end - group[0].size
	vfs.DropCache(group[0].file, start, last.end-start)
	return nil
}
