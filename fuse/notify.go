package fuse

import (
	"context"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// watch follows the filer's change events for the mounted subtree and
// invalidates what the kernel caches for changed inodes and directories,
// so that other mounts' changes show up at once. When the stream breaks
// it resubscribes and drops every cached attribute it cannot vouch for
// (the entry and attribute timeouts bound staleness meanwhile).
func (fs *fileSystem) watch(ctx context.Context) {
	for ctx.Err() == nil {
		stream, err := fs.client.Subscribe(ctx, fs.root)
		if err != nil {
			if ctx.Err() == nil {
				fs.log.Warn("cannot subscribe to filer change events; retrying (other mounts' changes show up within a second meanwhile)", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					fs.log.Debug("filer event stream ended; resubscribing", "err", err)
					sleep(ctx, 100*time.Millisecond)
				}
				break
			}
			for _, ino := range ev.Inos {
				fs.invalidate(ino, 0)
			}
			for _, d := range ev.Dirs {
				fs.invalidate(d, -1)
			}
		}
	}
}

// invalidate drops the kernel's attributes of ino and, when off >= 0, its
// cached data from off on; an open file refetches its slices.
func (fs *fileSystem) invalidate(ino uint64, off int64) {
	if f := fs.lookupFile(ino); f != nil {
		f.mu.Lock()
		f.markStaleLocked(anyGen)
		f.mu.Unlock()
	}
	fs.mu.Lock()
	delete(fs.mu.kept, ino)
	if fs.mu.attrsOut[ino] > 0 {
		// The kernel discards an attribute reply when an invalidation
		// of the file comes while the request is out, and the read
		// waiting on it stops at the old end of the file: invalidate
		// once the attribute requests being served are answered.
		if prev, ok := fs.mu.invalAfter[ino]; !ok || off >= 0 && (prev < 0 || off < prev) {
			fs.mu.invalAfter[ino] = off
		}
		fs.mu.Unlock()
		return
	}
	fs.mu.Unlock()
	fs.notifyKernel(ino, off)
}

// attrOut notes a getattr of ino being served, until its reply is written
// (see invalidate).
func (fs *fileSystem) attrOut(unique, ino uint64) {
	fs.mu.Lock()
	fs.mu.attrsOut[ino]++
	fs.mu.Unlock()
	fs.afterReply(unique, func() {
		fs.mu.Lock()
		fs.mu.attrsOut[ino]--
		left := fs.mu.attrsOut[ino]
		off, wait := fs.mu.invalAfter[ino]
		if left == 0 {
			delete(fs.mu.attrsOut, ino)
			delete(fs.mu.invalAfter, ino)
		}
		fs.mu.Unlock()
		if left == 0 && wait {
			fs.notifyKernel(ino, off)
		}
	})
}

// dropPages has the kernel drop its cached attributes and data of ino, from
// another goroutine: the caller may be answering a request the kernel
// holds the file's pages for. The kernel never drops them by itself (the
// mount asks for explicit data cache control), so every change made
// elsewhere must come here or to invalidate.
func (fs *fileSystem) dropPages(ino uint64) {
	if fs.server != nil {
		go fs.notifyKernel(ino, 0)
	}
}

// pageDrop returns what drops the kernel's pages of open file f, which
// changed elsewhere to generation gen and committed size size; once the
// kernel has dropped them, attribute replies may show that size (see
// file.pagesGen).
func (fs *fileSystem) pageDrop(f *file, gen, size uint64) func() {
	return func() {
		fs.notifyKernel(f.ino, 0)
		f.mu.Lock()
		f.pagesAtLocked(gen, size)
		f.mu.Unlock()
	}
}

// afterReply runs fn once the reply to request unique is written (in the
// background when go-fuse's own server serves the mount: it cannot tell).
func (fs *fileSystem) afterReply(unique uint64, fn func()) {
	if fs.order == nil {
		go fn()
		return
	}
	fs.mu.Lock()
	fs.mu.afterReply[order(unique)] = append(fs.mu.afterReply[order(unique)], fn)
	fs.afterPending.Add(1)
	fs.mu.Unlock()
}

// replied runs what waits for the reply to request unique (afterReply).
func (fs *fileSystem) replied(unique uint64) {
	if fs.afterPending.Load() == 0 {
		return
	}
	fs.mu.Lock()
	fns := fs.mu.afterReply[order(unique)]
	if fns != nil {
		delete(fs.mu.afterReply, order(unique))
		fs.afterPending.Add(-int32(len(fns)))
	}
	fs.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func (fs *fileSystem) notifyKernel(ino uint64, off int64) {
	if fs.server == nil {
		return
	}
	st := fs.server.InodeNotify(fs.kernelIno(ino), off, 0)
	if !st.Ok() && st != gofuse.ENOENT {
		fs.log.Debug("kernel cache invalidation failed", "ino", ino, "status", st)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
