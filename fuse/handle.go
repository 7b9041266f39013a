package fuse

import (
	"context"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/byterange"
)

// lookupFile returns the state of open file ino, nil if it is not open.
func (fs *fileSystem) lookupFile(ino uint64) *file {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.mu.files[ino]
}

// dropCounts counts dropped file states per bucket of inodes (ino % len),
// so that one file's closes do not make another's stats read it again.
type dropCounts [64]uint64

func (d *dropCounts) of(ino uint64) *uint64 { return &d[ino%uint64(len(d))] }

// drops returns the counts of file states dropped so far (see current).
func (fs *fileSystem) drops() dropCounts {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.mu.drops
}

// addHandle registers a handle for in (file state included) under fh, or
// under a new id if fh is 0, and returns the id. The caller holds openMu
// shared from reading in: a last close drops a file's state only with
// openMu held (Release), so in is not older than a state dropped meanwhile.
func (fs *fileSystem) addHandle(in *filer.Inode, flags uint32, fh uint64) uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fh == 0 {
		fs.mu.nextFh++
		fh = fs.mu.nextFh
	}
	f := fs.mu.files[in.Ino]
	if f == nil {
		f = newFile(fs, in)
		fs.mu.files[in.Ino] = f
	} else {
		f.mu.Lock()
		f.refreshLocked(in)
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
	fs.mu.handles[fh] = &handle{ino: in.Ino, flags: flags}
	return fh
}

// fileFor returns the state of the file behind a request. A handle id
// this process does not know (the kernel kept it across a restart of the
// mount) is adopted as if the file had been opened again.
func (fs *fileSystem) fileFor(cancel <-chan struct{}, nodeID, fh uint64) (*file, gofuse.Status) {
	ino := fs.filerIno(nodeID)
	fs.mu.Lock()
	h := fs.mu.handles[fh]
	f := fs.mu.files[ino]
	fs.mu.Unlock()
	if h != nil && f != nil {
		return f, gofuse.OK
	}
	fs.openMu.RLock() // see addHandle
	defer fs.openMu.RUnlock()
	in, st := fs.getattr(cancel, ino)
	if !st.Ok() {
		return nil, st
	}
	if !in.IsRegular() {
		return nil, gofuse.EBADF
	}
	fs.mu.Lock()
	known := fs.mu.handles[fh] != nil
	fs.mu.Unlock()
	if !known && fh != 0 {
		fs.log.Info("adopting a file handle opened before this process started", "ino", ino, "fh", fh)
		fs.addHandle(in, syscall.O_RDWR, fh)
		if in.Nlink == 0 {
			// Unlinked while open before the hand-over: other
			// descriptors from then may hold it too, which this
			// process cannot count; it is freed once the kernel
			// forgets it (Forget).
			fs.mu.Lock()
			fs.adoptOrphanLocked(ino)
			fs.mu.Unlock()
			fs.markUnlinked(ino)
		}
	}
	if f := fs.lookupFile(ino); f != nil {
		return f, gofuse.OK
	}
	return nil, gofuse.EBADF
}

func (fs *fileSystem) Open(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) (st gofuse.Status) {
	defer observe(opOpen, time.Now(), &st)
	if fs.cfg.ReadOnly && in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return gofuse.EROFS
	}
	fs.openMu.RLock()
	defer fs.openMu.RUnlock()
	ino, st := fs.getattr(cancel, fs.filerIno(in.NodeId))
	if !st.Ok() {
		return st
	}
	if ino.IsDir() {
		return gofuse.EISDIR
	}
	if gap := fs.testGap.Load(); gap != nil {
		(*gap)("open", ino.Ino)
	}
	keep := fs.keepCache(ino)
	out.Fh = fs.addHandle(ino, in.Flags, 0)
	if keep {
		out.OpenFlags |= gofuse.FOPEN_KEEP_CACHE
	} else {
		// The file may have changed elsewhere since the kernel took its
		// attributes, and an open does not refresh them: a read would
		// stop at the old end of the file (close-to-open consistency).
		// Without a page locked, they can go before the open returns.
		// The pages go now too, not only when the kernel drops them after
		// this reply: from here on replies show the new size (the pages
		// are counted as dropped), and a reader of another descriptor
		// told it in between read a page cached at the old end of the
		// file, zeros past it, as data. A read in flight keeps its page
		// locked, and the drop waits for it.
		fs.notifyKernel(ino.Ino, 0)
		if f := fs.lookupFile(ino.Ino); f != nil {
			f.mu.Lock()
			f.pagesDroppedLocked()
			f.mu.Unlock()
		}
	}
	return gofuse.OK
}

// keepCache reports whether the kernel's cached pages of file in hold its
// data as of in's generation (which the filer just gave), so that open
// need not drop them. The kernel drops a file's pages at every open
// otherwise: a database reopening its files, or any program reading a file
// it read before, read it all again through the mount.
//
// The pages are current when this mount saw every change up to in's
// generation: its own writes go through the kernel's cache, and another
// mount's change bumps the generation (and its change event drops the
// pages). For an open file the mount's generation is the file's; for a
// closed one it is the generation it had at its last close, if that close
// stored everything (kept). Close-to-open consistency holds without the
// change events: a change from elsewhere makes the generations differ.
func (fs *fileSystem) keepCache(in *filer.Inode) bool {
	if f := fs.lookupFile(in.Ino); f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.gen == in.Generation && f.pagesCurrentLocked()
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	g, ok := fs.mu.kept[in.Ino]
	return ok && g == in.Generation
}

// maxKept bounds the closed files whose cached pages open may keep.
const maxKept = 1 << 16

func (fs *fileSystem) Create(cancel <-chan struct{}, in *gofuse.CreateIn, name string, out *gofuse.CreateOut) (st gofuse.Status) {
	defer observe(opCreate, time.Now(), &st)
	fs.openMu.RLock()
	defer fs.openMu.RUnlock()
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.Create{
		Parent: fs.filerIno(in.NodeId), Name: name, Mode: in.Mode & 0o7777,
		Uid: in.Uid, Gid: in.Gid, Excl: in.Flags&syscall.O_EXCL != 0,
	})
	if !st.Ok() {
		return st
	}
	if res.Inode.IsDir() {
		return gofuse.EISDIR
	}
	if in.Flags&syscall.O_TRUNC != 0 && res.Inode.Size > 0 {
		// The name appeared (from another mount) after the kernel looked
		// it up; the kernel skips O_TRUNC for a file it believes created.
		if res, st = fs.applyReq(cancel, &in.InHeader, 1, &filer.SetAttr{Ino: res.Inode.Ino, Valid: filer.SetSize}); !st.Ok() {
			return st
		}
	}
	if res.Created {
		// A new file has no xattrs: the kernel's security.capability
		// query before its first write needs no filer round trip.
		fs.noCaps.add(res.Inode.Ino)
	}
	out.Fh = fs.addHandle(res.Inode, in.Flags, 0)
	return fs.fillEntry(cancel, res.Inode, r, &out.EntryOut)
}

// Tmpfile opens a new file in no directory (open with O_TMPFILE): an
// orphan on the filer, freed at its last close like a file unlinked while
// open, unless linkat (AT_EMPTY_PATH) gives it a name first.
func (fs *fileSystem) Tmpfile(cancel <-chan struct{}, in *gofuse.CreateIn, out *gofuse.CreateOut) (st gofuse.Status) {
	defer observe(opTmpfile, time.Now(), &st)
	fs.openMu.RLock()
	defer fs.openMu.RUnlock()
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.CreateTmp{
		Parent: fs.filerIno(in.NodeId), Mode: in.Mode & 0o7777, Uid: in.Uid, Gid: in.Gid,
	})
	if !st.Ok() {
		return st
	}
	fs.noCaps.add(res.Inode.Ino)
	out.Fh = fs.addHandle(res.Inode, in.Flags, 0)
	fs.markUnlinked(res.Inode.Ino)
	return fs.fillEntry(cancel, res.Inode, r, &out.EntryOut)
}

func (fs *fileSystem) Read(cancel <-chan struct{}, in *gofuse.ReadIn, buf []byte) (gofuse.ReadResult, gofuse.Status) {
	defer observeVoid(opRead, time.Now())
	fs.order.wait(in.Unique, in.NodeId, in.Offset, in.Offset+uint64(in.Size))
	f, st := fs.fileFor(cancel, in.NodeId, in.Fh)
	if !st.Ok() {
		return nil, st
	}
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	b, release, err := f.read(ctx, in.Offset, int(in.Size))
	if err != nil {
		return nil, errStatus(err)
	}
	return readResult{b, release}, gofuse.OK
}

// readResult is a READ's answer: bytes that may be the chunk cache's own,
// released once the reply to the kernel is written (Done).
type readResult struct {
	data    []byte
	release func()
}

func (r readResult) Bytes([]byte) ([]byte, gofuse.Status) { return r.data, gofuse.OK }
func (r readResult) Size() int                            { return len(r.data) }
func (r readResult) Done()                                { r.release() }

func (fs *fileSystem) Write(cancel <-chan struct{}, in *gofuse.WriteIn, data []byte) (uint32, gofuse.Status) {
	defer observeVoid(opWrite, time.Now())
	if fs.cfg.ReadOnly {
		return 0, gofuse.EROFS
	}
	f, st := fs.fileFor(cancel, in.NodeId, in.Fh)
	if !st.Ok() {
		return 0, st
	}
	if gap := fs.testGap.Load(); gap != nil {
		(*gap)("write", f.ino)
	}
	// A flush started here must finish even if the writer is interrupted.
	if err := f.write(fs.ctx, in.Offset, data); err != nil {
		return 0, dataStatus(err)
	}
	return uint32(len(data)), gofuse.OK
}

// Flush is close(2): it makes the file's data durable and reports
// failure (the data stays buffered and the error sticks).
func (fs *fileSystem) Flush(cancel <-chan struct{}, in *gofuse.FlushIn) (st gofuse.Status) {
	defer observe(opFlush, time.Now(), &st)
	return fs.flushHandle(cancel, in.NodeId, in.Fh)
}

// Fsync returns OK only once every byte written before it is durable
// (stored on every replica and referenced by a committed CommitSlices).
func (fs *fileSystem) Fsync(cancel <-chan struct{}, in *gofuse.FsyncIn) (st gofuse.Status) {
	defer observe(opFsync, time.Now(), &st)
	return fs.flushHandle(cancel, in.NodeId, in.Fh)
}

// flushHandle makes the data of the file behind handle fh durable, for
// close and fsync alike: the flush's outcome, or EIO for a handle whose
// writes died with a killed mount process (lostStatus).
func (fs *fileSystem) flushHandle(cancel <-chan struct{}, nodeID, fh uint64) gofuse.Status {
	f, st := fs.fileFor(cancel, nodeID, fh)
	if !st.Ok() {
		return st
	}
	st = dataStatus(f.flush(fs.ctx))
	if lost := fs.lostStatus(f.ino, fh); !lost.Ok() {
		return lost
	}
	return st
}

// lostStatus is EIO for handle fh of file ino when it was open while
// writes of the file that the mount had acknowledged were lost with the
// process that acknowledged them (killed: see pendingTable); OK
// otherwise. The error sticks to such a handle: the application must
// reopen the file and write those bytes again.
func (fs *fileSystem) lostStatus(ino, fh uint64) gofuse.Status {
	if !fs.lost.lostBefore(ino, fh) {
		return gofuse.OK
	}
	if fs.lost.tell(ino) {
		fs.log.Error("a descriptor opened before the previous mount process was killed is flushed; that process had acknowledged writes to this file that it had not stored, so fsync and close of such descriptors fail with EIO (reopen the file and write the data again)",
			"ino", ino, "fh", fh)
	}
	return gofuse.EIO
}

// Release drops a handle. The last handle of a file flushes what is still
// buffered (an error can only be logged here: close already reported it
// through Flush) and frees an inode unlinked while open.
func (fs *fileSystem) Release(cancel <-chan struct{}, in *gofuse.ReleaseIn) {
	defer observeVoid(opRelease, time.Now())
	ino := fs.filerIno(in.NodeId)
	fs.mu.Lock()
	if h := fs.mu.handles[in.Fh]; h != nil {
		ino = h.ino
		delete(fs.mu.handles, in.Fh)
	} else {
		fs.mu.Unlock()
		return // not ours: nothing to drop
	}
	f := fs.mu.files[ino]
	fs.mu.Unlock()
	if f == nil {
		return
	}
	// The handle's reference goes first, so that of two last handles
	// released at once exactly one sees none left, and flushes.
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	stored := true
	if last {
		if err := f.flush(fs.ctx); err != nil {
			stored = false
			fs.log.Error("last close of a file could not store its data; the unstored writes are lost (close reported the error to the application)",
				"ino", ino, "err", err)
		}
	}
	if last {
		// Opens are held off from here on (they hold openMu from
		// reading the inode to registering their handle, see
		// addHandle): an open that read the file before this drops
		// its state must find the state still there and take it over,
		// not make a new one from an inode older than what this close
		// committed, or for an inode about to be freed under it.
		fs.openMu.Lock()
		defer fs.openMu.Unlock()
	}
	fs.mu.Lock()
	f.mu.Lock()
	// An open during the flush took a reference, or opened, closed and
	// dropped the state itself: then the state is not this one's to drop.
	gone := last && f.refs == 0 && fs.mu.files[ino] == f
	unlinked := f.unlinked
	free, slot := false, f.orphanSlot
	if gone {
		(*fs.mu.drops.of(ino))++
		fs.addDirty(-int64(f.dirty.bytes), -int64(f.dirty.mem))
		f.dirty.drop()
		// Every descriptor is closed: none is left to report a loss to.
		fs.pending.remove(f.pend)
		f.pend = noSlot
		delete(fs.mu.files, ino)
		// The kernel's pages hold what was written; they may be kept
		// at the next open only if all of it was stored.
		delete(fs.mu.kept, ino)
		if stored && !unlinked && f.pagesCurrentLocked() {
			if len(fs.mu.kept) >= maxKept {
				clear(fs.mu.kept)
			}
			fs.mu.kept[ino] = f.gen
		}
		free = unlinked
		if as, ok := fs.mu.adopted[ino]; ok && unlinked {
			// Descriptors from before this process may hold it still:
			// freed when the kernel forgets it, unless it did already.
			free, slot = f.forgotten, as
			if free {
				delete(fs.mu.adopted, ino)
			}
		}
	}
	f.mu.Unlock()
	fs.mu.Unlock()
	if free {
		fs.releaseOrphan(ino, slot, "")
	}
}

// markUnlinked notes that open file ino lost a name, so its last close
// frees the inode if that was its last link.
func (fs *fileSystem) markUnlinked(ino uint64) {
	fs.mu.Lock()
	f := fs.mu.files[ino]
	_, adopted := fs.mu.adopted[ino]
	fs.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unlinked = true
	if f.orphanSlot == noSlot && !adopted {
		// Recorded, so that a process resuming after a kill of this one
		// frees it once the kernel forgets it.
		f.orphanSlot = f.fs.pending.addOrphan(ino)
	}
}

// flushAll flushes every open file and returns the first error.
func (fs *fileSystem) flushAll(ctx context.Context) error {
	fs.mu.Lock()
	files := make([]*file, 0, len(fs.mu.files))
	for _, f := range fs.mu.files {
		files = append(files, f)
	}
	fs.mu.Unlock()
	var first error
	for _, f := range files {
		if err := f.flush(ctx); err != nil {
			fs.log.Error("flushing a file failed", "ino", f.ino, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Fallocate: mode 0 extends the size, KEEP_SIZE does nothing (space is
// not reserved), PUNCH_HOLE|KEEP_SIZE punches a hole; others EOPNOTSUPP.
func (fs *fileSystem) Fallocate(cancel <-chan struct{}, in *gofuse.FallocateIn) (st gofuse.Status) {
	defer observe(opFallocate, time.Now(), &st)
	if fs.cfg.ReadOnly {
		return gofuse.EROFS
	}
	switch in.Mode {
	case 0, filer.FallocKeepSize, filer.FallocKeepSize | filer.FallocPunchHole:
	default:
		return gofuse.Status(syscall.EOPNOTSUPP)
	}
	f, st := fs.fileFor(cancel, in.NodeId, in.Fh)
	if !st.Ok() {
		return st
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	if err := f.flushLocked(fs.ctx); err != nil {
		return dataStatus(err)
	}
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.Fallocate{Ino: f.ino, Off: in.Offset, Len: in.Length, Mode: in.Mode})
	if !st.Ok() {
		return st
	}
	f.mu.Lock()
	f.ownCommitLocked(res.Inode)
	f.mu.Unlock()
	return gofuse.OK
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the slices and the buffered
// writes; the kernel handles the other whences itself.
func (fs *fileSystem) Lseek(cancel <-chan struct{}, in *gofuse.LseekIn, out *gofuse.LseekOut) (st gofuse.Status) {
	defer observe(opLseek, time.Now(), &st)
	if in.Whence != unix.SEEK_DATA && in.Whence != unix.SEEK_HOLE {
		return gofuse.EINVAL
	}
	f, st := fs.fileFor(cancel, in.NodeId, in.Fh)
	if !st.Ok() {
		return st
	}
	ctx, stop := fs.opCtx(cancel)
	f.refreshIfStale(ctx)
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	size := f.sizeLocked()
	off := in.Offset
	if off >= size {
		return gofuse.Status(syscall.ENXIO)
	}
	// Data: committed non-hole extents and every buffered range.
	var data byterange.Coverage
	for _, e := range f.pieces.Extents(off, size-off) {
		if e.Fid != "" {
			data = data.Add(e.Off, e.Off+e.Len)
		}
	}
	for _, set := range []*dirtySet{f.dirty, f.flushing} {
		if set == nil {
			continue
		}
		for _, s := range set.spans {
			if s.end() > off {
				data = data.Add(max(s.off, off), s.end())
			}
		}
	}
	if in.Whence == unix.SEEK_DATA {
		if len(data) == 0 || data[0].Lo >= size {
			return gofuse.Status(syscall.ENXIO)
		}
		out.Offset = max(data[0].Lo, off)
		return gofuse.OK
	}
	holes := data.Uncovered(off, size)
	if len(holes) == 0 {
		out.Offset = size
	} else {
		out.Offset = holes[0].Lo
	}
	return gofuse.OK
}
