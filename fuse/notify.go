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
		f.stale = true
		f.mu.Unlock()
	}
	fs.mu.Lock()
	delete(fs.mu.kept, ino)
	fs.mu.Unlock()
	fs.notifyKernel(ino, off)
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
