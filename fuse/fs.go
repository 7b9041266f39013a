package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// fileSystem implements gofuse.RawFileSystem. The server calls its
// methods concurrently, one goroutine per request.
//
// Lock order: fileSystem.mu, then file.flushMu, then file.mu. No lock is
// held across a call to the filer except file.flushMu.
type fileSystem struct {
	gofuse.RawFileSystem // ENOSYS for what is not implemented

	ctx    context.Context    // ends at unmount
	cancel context.CancelFunc // ends ctx
	cfg    Config
	client *filer.Client
	data   *filer.DataClient
	root   uint64 // filer inode of kernel node 1
	log    *slog.Logger
	server notifier // the connection, for cache invalidations; nil before it is served

	dirtyBytes atomic.Int64 // buffered bytes of every file
	memBytes   atomic.Int64 // the part of dirtyBytes held in memory (not spilled)
	memPeak    atomic.Int64 // the most memBytes has been
	limits     writeLimits  // when writers wait for flushes
	spill      *spillStore  // the spill file in the cache directory; nil without one
	spilled    atomic.Int64 // bytes ever moved to the spill file
	// spillWarned: a failure to spill was logged; cleared by a success.
	spillWarned atomic.Bool
	cache       *chunkCache // needle chunks read recently or ahead
	noCaps      absentCaps  // inodes known to have no security.capability
	// pending lists the files holding unstored writes (nil without
	// Config.PendingFile); lost is what the list a killed predecessor
	// left says (nil: nothing was lost).
	pending  *pendingTable
	lost     *lostWrites
	noInline atomic.Bool // the filer refused inline data (an older version)
	// afterPending counts what waits in mu.afterReply.
	afterPending atomic.Int32
	// order makes reads wait for earlier writes of the same bytes (see
	// writeOrder); nil when go-fuse's own server serves the mount.
	order *writeOrder
	// testGap, when set (by tests), runs at points where a request may
	// be held to order it against others: in Open between reading the
	// inode and registering the handle ("open"), in attribute and entry
	// replies before the overlay ("attr"), in Write before buffering
	// ("write"), and before following a commit of data ("commit").
	testGap atomic.Pointer[func(op string, ino uint64)]

	mu struct {
		sync.Mutex
		nextFh  uint64
		handles map[uint64]*handle // open files and directories by Fh
		files   map[uint64]*file   // state of open files by inode
		// kept maps closed files to the generation whose data the
		// kernel's page cache holds for them (see keepCache).
		kept map[uint64]uint64
		// drops counts the file states dropped at a last close: an
		// inode read from the filer before a drop may predate what the
		// dropped state committed (see current).
		drops dropCounts
		// afterReply holds what must wait for a request's reply to be
		// written, by request id (see fileSystem.afterReply).
		afterReply map[uint64][]func()
		// attrsOut counts the getattrs being served by inode, and
		// invalAfter holds the invalidations waiting for them
		// (offset as for notifyKernel; see invalidate).
		attrsOut   map[uint64]int
		invalAfter map[uint64]int64
		// adopted maps the orphans that descriptors from before this
		// process may hold open (kept by the previous process, or met
		// through a handle it opened) to their slot in the record of
		// unstored writes. This process cannot count those descriptors:
		// such an orphan is freed when the kernel forgets its inode,
		// which it does only once no descriptor holds it (Forget).
		adopted map[uint64]int
	}

	// openMu orders opens against unlinks and renames: an open holds it
	// shared from checking the inode to registering its handle, an unlink
	// or rename exclusively from checking whether its victim is open to
	// the filer's answer. So a file being opened is never freed under the
	// opener.
	openMu sync.RWMutex
}

var _ gofuse.RawFileSystem = (*fileSystem)(nil)

// notifier sends cache invalidations to the kernel (*gofuse.Server, or
// the mount's own connection, *devConn).
type notifier interface {
	InodeNotify(node uint64, off, length int64) gofuse.Status
}

// handle is one open file or directory.
type handle struct {
	ino   uint64
	flags uint32
	dir   *dirHandle // nil for files
}

func newFileSystem(ctx context.Context, cfg Config, client *filer.Client, root uint64, log *slog.Logger) *fileSystem {
	fs := &fileSystem{
		RawFileSystem: gofuse.NewDefaultRawFileSystem(),
		ctx:           ctx,
		cfg:           cfg,
		client:        client,
		root:          root,
		log:           log,
		limits:        limitsFor(false, 0, 0),
	}
	fs.cache = newChunkCache(chunkCacheBytes, func(ctx context.Context, fid string, off, n int64, buf []byte) ([]byte, error) {
		return fs.data.ReadBuf(ctx, fid, off, n, buf)
	})
	fs.mu.handles = make(map[uint64]*handle)
	fs.mu.files = make(map[uint64]*file)
	fs.mu.kept = make(map[uint64]uint64)
	fs.mu.adopted = make(map[uint64]int)
	fs.mu.afterReply = make(map[uint64][]func())
	fs.mu.attrsOut = make(map[uint64]int)
	fs.mu.invalAfter = make(map[uint64]int64)
	// Handle ids start at the clock so that a restarted mount does not hand
	// out the ids the kernel still holds from its predecessor.
	fs.mu.nextFh = uint64(time.Now().UnixNano())
	return fs
}

func (fs *fileSystem) String() string { return "cairn" }

// defaultInlineLimit is the most bytes of a flush committed with its bytes
// to the filer when Config.InlineLimit is zero.
const defaultInlineLimit = 64 << 10

// inlineLimit is the most bytes of a flush committed as inline data; -1
// when none is.
func (fs *fileSystem) inlineLimit() int {
	switch l := fs.cfg.InlineLimit; {
	case l < 0 || fs.noInline.Load():
		return -1
	case l == 0:
		return defaultInlineLimit
	default:
		return min(l, filer.MaxInlineBytes)
	}
}

// Init is called by go-fuse's server (mounts made through fusermount3);
// the mount's own serve loop sets server itself.
func (fs *fileSystem) Init(s *gofuse.Server) { fs.server = s }

// opCtx returns the context for one request. It ends only when the mount
// goes away, not when the kernel relays a signal to the caller (FUSE
// INTERRUPT): applications such as PostgreSQL are signalled all the time and
// do not retry open or mkdir on EINTR, and a mutation that was interrupted
// may still have been committed. A filer that does not answer gives EIO
// after the client's retry budget instead.
func (fs *fileSystem) opCtx(_ <-chan struct{}) (context.Context, context.CancelFunc) {
	return context.WithCancel(fs.ctx)
}

// apply runs one filer command; the caller owns the returned inode.
func (fs *fileSystem) apply(cancel <-chan struct{}, op filer.Op) (*filer.Result, gofuse.Status) {
	if fs.cfg.ReadOnly {
		return nil, gofuse.EROFS
	}
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	res, err := fs.client.Apply(ctx, op)
	return fs.applied(op, res, err)
}

// applied is the status of op's answer from the filer: the errno it
// carries, or EIO (logged) when the filer could not be reached.
func (fs *fileSystem) applied(op filer.Op, res *filer.Result, err error) (*filer.Result, gofuse.Status) {
	st := errStatus(err)
	if st == gofuse.EIO {
		fs.log.Error("filer command failed; reporting EIO", "op", op.OpType(), "err", err)
	}
	return res, st
}

// reqSlots is how many filer sessions the namespace changes of one FUSE
// connection run under (see applyExact).
const reqSlots = 4096

// applyReq is apply for step (0, 1, ...) of the request with header h:
// applyExact when it can, apply otherwise.
func (fs *fileSystem) applyReq(cancel <-chan struct{}, h *gofuse.InHeader, step uint64, op filer.Op) (*filer.Result, gofuse.Status) {
	if res, st, exact := fs.applyExact(cancel, h, step, op); exact {
		return res, st
	}
	return fs.apply(cancel, op)
}

// applyExact runs step (0, 1, ...) of the request with header h under a
// filer session of the FUSE connection's own, so that it is carried out
// at most once even across a kill of the mount process: the kernel sends
// a request the killed process had read and not answered again, with the
// same unique id (see devConn.resend), and the filer answers a command
// sent again in its session with the result it had (a creation with its
// inode, a rename exchange with success) instead of doing it twice or
// failing because its work is done. The session is slot unique%reqSlots
// of the connection's request session id (kept in the record of unstored
// writes, so the process that resumes the connection uses it too), and
// the sequence number grows with the unique id, as the filer requires of
// a session's commands.
//
// exact is false when the request cannot run so, and nothing was done:
// the mount keeps no such record (it cannot be resumed after a kill), a
// request sent again whose first run was under another id (a process of
// an earlier version), or a later request of the same slot ran first
// (the filer refuses the older sequence number with ESTALE; it would take
// thousands of requests overtaking this one).
func (fs *fileSystem) applyExact(cancel <-chan struct{}, h *gofuse.InHeader, step uint64, op filer.Op) (res *filer.Result, st gofuse.Status, exact bool) {
	t := fs.pending
	if t == nil || fs.cfg.ReadOnly || resent(h.Unique) && !t.carried.Load() {
		return nil, gofuse.OK, false
	}
	u := order(h.Unique)
	session := fmt.Sprintf("fuse-%016x-%d", t.id, u%reqSlots)
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	res, err := fs.client.ApplyAs(ctx, session, u*4+step+1, op)
	if errors.Is(err, syscall.ESTALE) {
		return nil, gofuse.OK, false
	}
	if err == nil && res.Inode != nil && res.Inode.Mode == 0 {
		// A first answer whose inode is gone since (the filer keeps the
		// number only): what it made was removed meanwhile.
		return nil, gofuse.ENOENT, true
	}
	res, st = fs.applied(op, res, err)
	return res, st, true
}

func (fs *fileSystem) getattr(cancel <-chan struct{}, ino uint64) (*filer.Inode, gofuse.Status) {
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	in, err := fs.client.GetAttr(ctx, ino)
	return in, errStatus(err)
}

// attr is getattr without the slice list, for answers that need only
// attributes (a stat of a fragmented file would carry its whole list).
func (fs *fileSystem) attr(cancel <-chan struct{}, ino uint64) (*filer.Inode, gofuse.Status) {
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	in, err := fs.client.Attr(ctx, ino)
	return in, errStatus(err)
}

func (fs *fileSystem) Lookup(cancel <-chan struct{}, h *gofuse.InHeader, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	defer observe(opLookup, time.Now(), &st)
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	r := fs.startAttrReply(h)
	in, err := fs.client.LookupAttr(ctx, fs.filerIno(h.NodeId), name)
	if err != nil {
		return errStatus(err)
	}
	return fs.fillEntry(cancel, in, r, out)
}

// Forget frees an adopted orphan (see fileSystem.mu.adopted): the kernel
// forgets the inode of an unlinked file as soon as its last descriptor is
// closed. Other inodes need nothing: kernel node ids are filer inodes.
func (fs *fileSystem) Forget(nodeid, nlookup uint64) {
	ino := fs.filerIno(nodeid)
	if slot, ok := fs.forgetAdopted(ino); ok {
		go fs.releaseOrphan(ino, slot, "the kernel forgot a file unlinked while open before this process started: every descriptor is closed")
	}
}

// forgetAdopted notes that the kernel holds adopted orphan ino no more.
// It reports the orphan's slot and true when it is to be freed now; a
// file state this process still has frees it at its last release, which
// may come after the kernel forgot the inode.
func (fs *fileSystem) forgetAdopted(ino uint64) (slot int, free bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	slot, ok := fs.mu.adopted[ino]
	if !ok {
		return 0, false
	}
	if f := fs.mu.files[ino]; f != nil {
		f.mu.Lock()
		f.forgotten = true
		f.mu.Unlock()
		return 0, false
	}
	delete(fs.mu.adopted, ino)
	return slot, true
}

// sweepAdopted frees the adopted orphans the kernel no longer knows: the
// last descriptor of such a file closed before this process could hear
// of it (the previous process was killed between the close and freeing
// it, or read the kernel's forget and died). Asking the kernel to drop
// an inode's attributes fails with ENOENT for an inode it does not hold.
func (fs *fileSystem) sweepAdopted() {
	fs.mu.Lock()
	inos := make([]uint64, 0, len(fs.mu.adopted))
	for ino := range fs.mu.adopted {
		inos = append(inos, ino)
	}
	fs.mu.Unlock()
	for _, ino := range inos {
		if fs.server == nil || fs.server.InodeNotify(fs.kernelIno(ino), -1, 0) != gofuse.ENOENT {
			continue
		}
		if slot, ok := fs.forgetAdopted(ino); ok {
			fs.releaseOrphan(ino, slot, "freed a file unlinked while open whose descriptors all closed while no process served the mount")
		}
	}
}

// releaseOrphan frees orphan ino on the filer and forgets its record
// (slot); why says what closed it.
func (fs *fileSystem) releaseOrphan(ino uint64, slot int, why string) {
	_, err := fs.client.Apply(fs.ctx, &filer.ReleaseOrphan{Ino: ino})
	if err != nil && err != syscall.ENOENT {
		fs.log.Error("freeing a file unlinked while open failed; the filer keeps it as an orphan", "ino", ino, "err", err)
		return
	}
	fs.pending.removeOrphan(slot)
	if why != "" {
		fs.log.Info(why, "ino", ino)
	}
}

// adoptOrphanLocked marks orphan ino, met through a handle opened before this
// process started, as adopted: other such descriptors may hold it open.
// The caller holds fs.mu.
func (fs *fileSystem) adoptOrphanLocked(ino uint64) {
	if _, ok := fs.mu.adopted[ino]; !ok {
		fs.mu.adopted[ino] = fs.pending.addOrphan(ino)
	}
}

func (fs *fileSystem) GetAttr(cancel <-chan struct{}, in *gofuse.GetAttrIn, out *gofuse.AttrOut) (st gofuse.Status) {
	defer observe(opGetAttr, time.Now(), &st)
	r := fs.startAttrReply(&in.InHeader)
	fs.attrOut(in.Unique, fs.filerIno(in.NodeId))
	ino, st := fs.attr(cancel, fs.filerIno(in.NodeId))
	if !st.Ok() {
		return st
	}
	return fs.fillAttrOut(cancel, ino, r, out)
}

func (fs *fileSystem) SetAttr(cancel <-chan struct{}, in *gofuse.SetAttrIn, out *gofuse.AttrOut) (st gofuse.Status) {
	defer observe(opSetAttr, time.Now(), &st)
	if fs.cfg.ReadOnly {
		return gofuse.EROFS
	}
	ino := fs.filerIno(in.NodeId)
	op := &filer.SetAttr{Ino: ino}
	now := time.Now().UnixNano()
	if m, ok := in.GetMode(); ok {
		op.Valid |= filer.SetMode
		op.Mode = m
	}
	if u, ok := in.GetUID(); ok {
		op.Valid |= filer.SetUid
		op.Uid = u
	}
	if g, ok := in.GetGID(); ok {
		op.Valid |= filer.SetGid
		op.Gid = g
	}
	if s, ok := in.GetSize(); ok {
		op.Valid |= filer.SetSize
		op.Size = s
	}
	if in.Valid&gofuse.FATTR_ATIME != 0 {
		op.Valid |= filer.SetAtime
		op.Atime = int64(in.Atime)*1e9 + int64(in.Atimensec)
		if in.Valid&gofuse.FATTR_ATIME_NOW != 0 {
			op.Atime = now
		}
	}
	if in.Valid&gofuse.FATTR_MTIME != 0 {
		op.Valid |= filer.SetMtime
		op.Mtime = int64(in.Mtime)*1e9 + int64(in.Mtimensec)
		if in.Valid&gofuse.FATTR_MTIME_NOW != 0 {
			op.Mtime = now
		}
	}
	if op.Valid == 0 {
		// Nothing the filer keeps (ctime alone, lock owner): report.
		return fs.GetAttr(cancel, &gofuse.GetAttrIn{InHeader: in.InHeader}, out)
	}
	f := fs.lookupFile(ino)
	if f != nil && op.Valid&(filer.SetSize|filer.SetMtime) != 0 {
		// Buffered data goes first: it lies below a truncation, and its
		// commit must not overwrite an explicitly set mtime.
		f.flushMu.Lock()
		defer f.flushMu.Unlock()
		if err := f.flushLocked(fs.ctx); err != nil {
			return dataStatus(err)
		}
	}
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, op)
	if !st.Ok() {
		return st
	}
	if f != nil {
		f.mu.Lock()
		f.ownCommitLocked(res.Inode)
		f.mu.Unlock()
	}
	return fs.fillAttrOut(cancel, res.Inode, r, out)
}

func (fs *fileSystem) Mknod(cancel <-chan struct{}, in *gofuse.MknodIn, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	defer observe(opMknod, time.Now(), &st)
	// Only regular files: the filer keeps no devices, FIFOs or sockets.
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return gofuse.ENOTSUP
	}
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.Create{Parent: fs.filerIno(in.NodeId), Name: name, Mode: in.Mode &^ syscall.S_IFMT, Uid: in.Uid, Gid: in.Gid, Excl: true})
	if !st.Ok() {
		return st
	}
	return fs.fillEntry(cancel, res.Inode, r, out)
}

func (fs *fileSystem) Mkdir(cancel <-chan struct{}, in *gofuse.MkdirIn, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	defer observe(opMkdir, time.Now(), &st)
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.Mkdir{Parent: fs.filerIno(in.NodeId), Name: name, Mode: in.Mode & 0o7777, Uid: in.Uid, Gid: in.Gid})
	if !st.Ok() {
		return st
	}
	return fs.fillEntry(cancel, res.Inode, r, out)
}

// openChild returns the inode of entry name of parent if it is a file
// open in this mount (then an unlink or a rename over it keeps the inode
// until its last close), else 0. The caller holds openMu exclusively.
func (fs *fileSystem) openChild(cancel <-chan struct{}, parent uint64, name string) uint64 {
	fs.mu.Lock()
	n := len(fs.mu.files)
	fs.mu.Unlock()
	if n == 0 {
		return 0
	}
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	in, err := fs.client.LookupAttr(ctx, parent, name)
	if err != nil || fs.lookupFile(in.Ino) == nil {
		return 0
	}
	return in.Ino
}

func (fs *fileSystem) Unlink(cancel <-chan struct{}, h *gofuse.InHeader, name string) (st gofuse.Status) {
	defer observe(opUnlink, time.Now(), &st)
	parent := fs.filerIno(h.NodeId)
	fs.openMu.Lock()
	defer fs.openMu.Unlock()
	open := fs.openChild(cancel, parent, name)
	_, st = fs.applyReq(cancel, h, 0, &filer.Unlink{Parent: parent, Name: name, KeepIfOpen: open != 0})
	if st.Ok() && open != 0 {
		fs.markUnlinked(open)
	}
	return fs.resentGone(h, st, "unlink", name, nil)
}

func (fs *fileSystem) Rmdir(cancel <-chan struct{}, h *gofuse.InHeader, name string) (st gofuse.Status) {
	defer observe(opRmdir, time.Now(), &st)
	_, st = fs.applyReq(cancel, h, 0, &filer.Rmdir{Parent: fs.filerIno(h.NodeId), Name: name})
	return fs.resentGone(h, st, "rmdir", name, nil)
}

func (fs *fileSystem) Rename(cancel <-chan struct{}, in *gofuse.RenameIn, oldName, newName string) (st gofuse.Status) {
	defer observe(opRename, time.Now(), &st)
	if in.Flags&^(filer.RenameNoReplace|filer.RenameExchange) != 0 {
		return gofuse.EINVAL // RENAME_WHITEOUT and unknown flags
	}
	op := &filer.Rename{OldParent: fs.filerIno(in.NodeId), OldName: oldName, NewParent: fs.filerIno(in.Newdir), NewName: newName, Flags: in.Flags}
	var open uint64
	fs.openMu.Lock()
	defer fs.openMu.Unlock()
	if in.Flags&filer.RenameExchange == 0 {
		open = fs.openChild(cancel, op.NewParent, newName)
		op.KeepIfOpen = open != 0
	} else if resent(in.Unique) {
		// The killed process may have swapped the names already:
		// swapping again would undo it silently. Only the request's
		// own session can tell (it answers with the first result).
		_, st, exact := fs.applyExact(cancel, &in.InHeader, 0, op)
		if !exact {
			fs.log.Error("a rename exchange the killed mount process had left unanswered is refused with EIO: it may have been carried out, and doing it again would swap the names back",
				"old", oldName, "new", newName)
			return gofuse.EIO
		}
		return st
	}
	_, st = fs.applyReq(cancel, &in.InHeader, 0, op)
	if st.Ok() && open != 0 {
		fs.markUnlinked(open)
	}
	return fs.resentGone(&in.InHeader, st, "rename", oldName, func() bool {
		// Done means the new name is there.
		ctx, stop := fs.opCtx(cancel)
		defer stop()
		_, err := fs.client.LookupAttr(ctx, op.NewParent, newName)
		return err == nil
	})
}

// resentGone turns the ENOENT of an unlink, rmdir or rename that the
// kernel sent again after the process that first read it was killed
// (see devConn.resend) into success, when done (nil: always) agrees: the
// name is gone because that process had carried the request out (the
// filer committed it; the reply never left), or because another client
// removed it meanwhile, which the caller could not tell from its own
// removal coming first. Other answers, and every answer to a request
// sent once, are returned as they are. Creations that find their name
// taken (mkdir, link, create with O_EXCL) keep their EEXIST: those are
// how programs take locks, and one taken by another client must not
// look taken by the caller.
func (fs *fileSystem) resentGone(h *gofuse.InHeader, st gofuse.Status, op, name string, done func() bool) gofuse.Status {
	if st != gofuse.ENOENT || !resent(h.Unique) || done != nil && !done() {
		return st
	}
	fs.log.Warn("a request the killed mount process had left unanswered finds its name already gone: that process carried it out; answering success",
		"op", op, "name", name)
	return gofuse.OK
}

func (fs *fileSystem) Link(cancel <-chan struct{}, in *gofuse.LinkIn, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	defer observe(opLink, time.Now(), &st)
	r := fs.startAttrReply(&in.InHeader)
	res, st := fs.applyReq(cancel, &in.InHeader, 0, &filer.Link{Ino: fs.filerIno(in.Oldnodeid), NewParent: fs.filerIno(in.NodeId), NewName: name})
	if !st.Ok() {
		return st
	}
	return fs.fillEntry(cancel, res.Inode, r, out)
}

func (fs *fileSystem) Symlink(cancel <-chan struct{}, h *gofuse.InHeader, target, name string, out *gofuse.EntryOut) (st gofuse.Status) {
	defer observe(opSymlink, time.Now(), &st)
	r := fs.startAttrReply(h)
	res, st := fs.applyReq(cancel, h, 0, &filer.Symlink{Parent: fs.filerIno(h.NodeId), Name: name, Target: target, Uid: h.Uid, Gid: h.Gid})
	if !st.Ok() {
		return st
	}
	return fs.fillEntry(cancel, res.Inode, r, out)
}

func (fs *fileSystem) Readlink(cancel <-chan struct{}, h *gofuse.InHeader) ([]byte, gofuse.Status) {
	defer observeVoid(opReadlink, time.Now())
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	var target string
	err := fs.client.Read(ctx, &pb.FilerReadRequest{Op: "readlink", Ino: fs.filerIno(h.NodeId)}, &target)
	if err != nil {
		return nil, errStatus(err)
	}
	return []byte(target), gofuse.OK
}

// FsyncDir has nothing to wait for: every change of a directory was
// committed through Raft before the operation returned.
func (fs *fileSystem) FsyncDir(cancel <-chan struct{}, in *gofuse.FsyncIn) (st gofuse.Status) {
	defer observe(opFsyncDir, time.Now(), &st)
	return gofuse.OK
}

// StatFs reports the quota of the quota root the mounted directory is
// charged to: its byte and inode limits, or 1 PiB and 2^40 inodes when
// unlimited.
func (fs *fileSystem) StatFs(cancel <-chan struct{}, h *gofuse.InHeader, out *gofuse.StatfsOut) (st gofuse.Status) {
	defer observe(opStatFs, time.Now(), &st)
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	sf, err := fs.client.Statfs(ctx, fs.filerIno(h.NodeId))
	if err != nil {
		return errStatus(err)
	}
	const bsize = 4096
	total := uint64(1 << 50)
	if sf.MaxBytes > 0 {
		total = sf.MaxBytes
	}
	used := min(sf.Bytes, total)
	files := uint64(1 << 40)
	if sf.MaxInodes > 0 {
		files = sf.MaxInodes
	}
	*out = gofuse.StatfsOut{
		Blocks:  total / bsize,
		Bfree:   (total - used) / bsize,
		Bavail:  (total - used) / bsize,
		Files:   files,
		Ffree:   files - min(sf.Inodes, files),
		Bsize:   bsize,
		Frsize:  bsize,
		NameLen: 255,
	}
	return gofuse.OK
}
