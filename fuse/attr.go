package fuse

import (
	"context"
	"errors"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/filer"
)

// errStatus maps an error of the filer or the data path to the errno the
// application sees. Errnos from the filer pass through; out of space on
// the volume servers is ENOSPC; everything else (unreachable filer or
// volume servers, lost replicas) is EIO.
func errStatus(err error) gofuse.Status {
	if err == nil {
		return gofuse.OK
	}
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
		return gofuse.Status(e)
	case errors.Is(err, filer.ErrNoSpace):
		return gofuse.Status(syscall.ENOSPC)
	case errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled:
		return gofuse.EINTR
	}
	return gofuse.EIO
}

// dataStatus is errStatus for the results of writing data (write, fsync,
// close): a quota limit is reported as ENOSPC, which is what applications
// expect from a full file system (the filer's EDQUOT is logged).
func dataStatus(err error) gofuse.Status {
	st := errStatus(err)
	if st == gofuse.Status(syscall.EDQUOT) {
		return gofuse.Status(syscall.ENOSPC)
	}
	if st == gofuse.EINTR {
		return gofuse.EIO
	}
	return st
}

// kernelIno is the kernel node id of filer inode ino.
func (fs *fileSystem) kernelIno(ino uint64) uint64 {
	if ino == fs.root {
		return gofuse.FUSE_ROOT_ID
	}
	return ino
}

// filerIno is the filer inode of kernel node id n.
func (fs *fileSystem) filerIno(n uint64) uint64 {
	if n == gofuse.FUSE_ROOT_ID {
		return fs.root
	}
	return n
}

// fillAttr converts a filer inode to kernel attributes, with the owner
// and umask overrides of the mount applied.
func (fs *fileSystem) fillAttr(in *filer.Inode, out *gofuse.Attr) {
	*out = gofuse.Attr{
		Ino:       in.Ino,
		Size:      in.Size,
		Blocks:    (in.Size + 511) / 512,
		Atime:     uint64(in.Atime / 1e9),
		Atimensec: uint32(in.Atime % 1e9),
		Mtime:     uint64(in.Mtime / 1e9),
		Mtimensec: uint32(in.Mtime % 1e9),
		Ctime:     uint64(in.Ctime / 1e9),
		Ctimensec: uint32(in.Ctime % 1e9),
		Mode:      in.Mode &^ (fs.cfg.Umask & 0o777),
		Nlink:     in.Nlink,
		Blksize:   4096,
	}
	out.Uid, out.Gid = in.Uid, in.Gid
	if fs.cfg.Uid >= 0 {
		out.Uid = uint32(fs.cfg.Uid)
	}
	if fs.cfg.Gid >= 0 {
		out.Gid = uint32(fs.cfg.Gid)
	}
}

// attrReply is what a reply carrying attributes needs from the start of
// its request: the dropped file states counted then (see current), and
// the request's id (a page drop it calls for must follow the reply).
type attrReply struct {
	drops  dropCounts
	unique uint64
}

// startAttrReply is called before a request that replies with attributes
// reads anything from the filer.
func (fs *fileSystem) startAttrReply(h *gofuse.InHeader) *attrReply {
	return &attrReply{drops: fs.drops(), unique: h.Unique}
}

// fillEntry fills an entry reply for in, read from the filer after r was
// started, with the local state of an open file overlaid (see current).
func (fs *fileSystem) fillEntry(cancel <-chan struct{}, in *filer.Inode, r *attrReply, out *gofuse.EntryOut) gofuse.Status {
	in, st := fs.current(cancel, in, r)
	if !st.Ok() {
		return st
	}
	out.NodeId = fs.kernelIno(in.Ino)
	out.Generation = 0
	out.SetEntryTimeout(attrTimeout)
	out.SetAttrTimeout(attrTimeout)
	fs.fillAttr(in, &out.Attr)
	return gofuse.OK
}

// fillAttrOut is fillEntry for an attribute reply.
func (fs *fileSystem) fillAttrOut(cancel <-chan struct{}, in *filer.Inode, r *attrReply, out *gofuse.AttrOut) gofuse.Status {
	in, st := fs.current(cancel, in, r)
	if !st.Ok() {
		return st
	}
	out.SetTimeout(attrTimeout)
	fs.fillAttr(in, &out.Attr)
	return gofuse.OK
}

// current returns in, read from the filer after r was started, with the
// local state of an open file overlaid. If the file has no state now but
// had one dropped since (its last handle closed), in may predate what that
// state committed: the kernel takes the size it is told, and a smaller one
// would cut its cached pages and end reads early. The attributes are then
// read again, until no drop comes in between.
//
// When the overlay calls for the kernel's pages of the file to go, they go
// once the reply is written: the kernel discards an attribute reply when
// an invalidation of the same file comes while the request is out, so
// invalidating first would lose the reply (and the read waiting on it
// would stop at the old end of the file).
func (fs *fileSystem) current(cancel <-chan struct{}, in *filer.Inode, r *attrReply) (*filer.Inode, gofuse.Status) {
	if gap := fs.testGap.Load(); gap != nil {
		(*gap)("attr", in.Ino)
	}
	drops := r.drops
	for {
		ok, drop := fs.overlay(in, &drops)
		if ok {
			if drop != nil {
				fs.afterReply(r.unique, drop)
			}
			return in, gofuse.OK
		}
		drops = fs.drops()
		var st gofuse.Status
		if in, st = fs.attr(cancel, in.Ino); !st.Ok() {
			return nil, st
		}
	}
}

// overlay applies the buffered writes of an open file to in: the size
// includes dirty data and mtime is the time of the last write. in may lack
// its slice list (attributes only): a newer generation than the file's
// marks the file stale, and its next read fetches the list; the kernel's
// pages of it are dropped unless the generation may be this mount's own
// commit in flight (followCommit sees to that case).
//
// It reports false (ok), changing nothing, when the file has no state and
// one of its inode's bucket was dropped since drops was taken (see
// current). drop, when not nil, drops the kernel's pages of the file and
// must run after the reply.
func (fs *fileSystem) overlay(in *filer.Inode, drops *dropCounts) (ok bool, drop func()) {
	if !in.IsRegular() {
		return true, nil
	}
	fs.mu.Lock()
	f := fs.mu.files[in.Ino]
	unchanged := *fs.mu.drops.of(in.Ino) == *drops.of(in.Ino)
	fs.mu.Unlock()
	if f == nil {
		return unchanged, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.Generation > f.gen {
		f.markStaleLocked(in.Generation) // f's slices are older: its next read fetches them
	}
	gen, size := f.gen, f.size
	if in.Generation > gen {
		gen, size = in.Generation, in.Size
	}
	if gen > f.pagesGen && f.flushing == nil {
		// Changed elsewhere (with no commit of this mount in flight,
		// which may be the change), and the kernel's pages may predate
		// it: keep showing the size they agree with until they are
		// dropped, once per change, after this reply (see current).
		in.Size = f.sizeOverLocked(f.shown)
		if gen > f.dropped {
			f.dropped = gen
			drop = fs.pageDrop(f, gen, size)
		}
	} else {
		in.Size = f.sizeOverLocked(size)
	}
	if f.mtime > in.Mtime && f.hasDirtyLocked() {
		in.Mtime = f.mtime
	}
	return true, drop
}
