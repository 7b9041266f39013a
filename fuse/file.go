package fuse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/byterange"
)

// file is the state of a regular file open in this mount, shared by all
// its handles: the committed slices and size as last seen from the filer,
// and the writes not yet committed.
//
// A flush moves the dirty set to flushing (new writes start a fresh dirty
// set), uploads it as needles, then commits all of them and the size with
// one CommitSlices. Reads see dirty over flushing over committed data.
// When a flush fails, its data goes back under the dirty set and err is
// set; every later flush retries and, until one succeeds, fsync and close
// report the error (DESIGN.md rule 4).
type file struct {
	fs  *fileSystem
	ino uint64

	// flushMu serialises flushes and the operations that must not overlap
	// one (truncate, fallocate). Held across filer and volume calls.
	flushMu sync.Mutex

	mu       sync.Mutex // guards the fields below
	progress sync.Cond  // on mu: a flush took the dirty set or ended, or the background flush stopped
	lost     error      // buffered data lost (spill file failure): reported until the file is reopened
	refs     int        // open handles
	unlinked bool       // an unlink or rename removed a name while open
	// orphanSlot records the file in the record of unstored writes while
	// this mount keeps it as an orphan (noSlot: not recorded); forgotten
	// says the kernel forgot the inode of an adopted orphan (Forget).
	orphanSlot int
	forgotten  bool
	pieces     filer.PieceList // the committed slices, as the filer's pieces (by offset)
	size       uint64          // committed size
	gen        uint64          // filer generation of slices and size
	stale      bool            // the filer announced a change, or a stat saw a newer generation; refetch before reading
	// staleGen is the newest generation that made f stale (anyGen: not
	// known, a change event): f's state clears stale once it reaches it.
	// staleSeq counts the times stale was set: a fetch clears stale only
	// if it was not set again while the fetch was out (refreshIfStale).
	staleGen, staleSeq uint64
	// dropped is the newest generation made elsewhere that a stat saw and
	// dropped the kernel's pages for (overlay): once per change, so that
	// stats do not keep the kernel's attributes from being cached.
	dropped uint64
	// pagesGen is the newest generation the kernel's cached pages of the
	// file agree with, and shown the committed size then. A page cached
	// while the file ended at shown holds zeros past that end: told a
	// larger size before the page goes, the kernel would read the zeros
	// as data. So attribute replies show shown (and this mount's own
	// writes) until the pages of a newer generation are dropped (overlay).
	// This mount's own commits keep them in step (its writes go through
	// the kernel's cache); changes from elsewhere do not.
	pagesGen uint64
	shown    uint64
	mixed    bool   // a read returned bytes older than gen: the kernel's pages may be stale
	taken    uint64 // times the committed state was taken from the filer (setCommittedLocked)
	dirty    *dirtySet
	flushing *dirtySet // being uploaded; nil when no flush runs
	mtime    int64     // ns, time of the last write
	err      error     // sticky error of the last failed flush
	bgFlush  bool      // a background flush was started and has not ended
	seqNext  uint64    // the furthest end of a sequential read (or the end of the last far read)
	raEnd    uint64    // file offset up to which chunks were read ahead
	readEnds [8]uint64 // 1 + where the last reads ended (0: no read): a read starting at one of them is sequential
	reads    uint64    // reads so far; readEnds[reads%8] is the next slot

	// preRunning counts the uploads ahead of a flush in flight (see
	// preUploadLocked); preErr is the error of the last one that failed,
	// which stops them until a flush succeeds. Guarded by mu.
	preRunning int
	preErr     error

	// pend is the file's slot in the mount's record of unstored writes
	// (pendingTable): set by the first write after the file was clean,
	// released once everything written is stored. Guarded by mu.
	pend int
}

func newFile(fs *fileSystem, in *filer.Inode) *file {
	f := &file{fs: fs, ino: in.Ino, dirty: newDirtySet(fs.spill), pend: noSlot, orphanSlot: noSlot}
	f.progress.L = &f.mu
	f.setCommittedLocked(in)
	// Opened: the kernel's pages are current (keepCache) or dropped
	// by the open.
	f.pagesGen, f.shown = in.Generation, in.Size
	return f
}

// ownChangeLocked notes that this mount's own change made generation
// in.Generation of the file, from the one before: the kernel's pages
// follow it (the change went through them) if they agreed with that one.
// The file's state may have taken in's generation already, from a read
// or an open that fetched the inode while the change's answer was on its
// way: the pages still follow, and must be counted as following, or every
// later stat would show the size from before the change (see overlay), the
// kernel would cut the file back to it, and an O_APPEND write would land
// there, over committed data.
func (f *file) ownChangeLocked(in *filer.Inode) {
	if in.Generation > 0 && f.pagesGen == in.Generation-1 {
		f.pagesGen, f.shown = in.Generation, in.Size
	}
}

// ownCommitLocked is setCommittedLocked for the answer to this mount's
// own change (a truncation, a hole punched: the kernel changes its pages
// itself).
func (f *file) ownCommitLocked(in *filer.Inode) {
	if in.Generation > f.gen {
		f.setCommittedLocked(in)
	}
	f.ownChangeLocked(in)
}

// pagesDroppedLocked notes that the kernel dropped its pages of the file
// (an open without FOPEN_KEEP_CACHE): they agree with f's generation.
func (f *file) pagesDroppedLocked() { f.pagesAtLocked(f.gen, f.size) }

// pagesAtLocked notes that the kernel's pages of the file agree with
// generation gen, when the file had committed size size, if that is newer
// than what they were known to agree with.
func (f *file) pagesAtLocked(gen, size uint64) {
	if gen > f.pagesGen {
		f.pagesGen, f.shown = gen, size
	}
}

// setCommittedLocked takes the committed state from an inode returned by
// the filer. It leaves stale as it is: only a fetch begun after stale was
// set may clear it (refreshIfStale).
func (f *file) setCommittedLocked(in *filer.Inode) {
	if in == nil {
		return
	}
	f.pieces = filer.NewPieceList(filer.Pieces(in.Slices))
	f.size, f.gen = in.Size, in.Generation
	f.taken++
	f.clearStaleIfCurrentLocked()
}

// anyGen is the generation of a change that made a file stale when it is
// not known: only a fetch clears it.
const anyGen = ^uint64(0)

// markStaleLocked notes that the filer has a state of the file newer than
// f's, generation gen (anyGen: not known): its next read fetches it.
func (f *file) markStaleLocked(gen uint64) {
	f.stale = true
	f.staleSeq++
	f.staleGen = max(f.staleGen, gen)
}

// clearStaleIfCurrentLocked clears stale once f's state is at least as new
// as every change that made it stale.
func (f *file) clearStaleIfCurrentLocked() {
	if f.stale && f.staleGen != anyGen && f.staleGen <= f.gen {
		f.stale, f.staleGen = false, 0
	}
}

// refreshIfStale fetches the file's slice list when the filer announced a
// change (or a stat saw a newer generation) since f took it. A failed
// fetch leaves f as it is: the read that follows reports what fails.
//
// Only this fetch clears stale, and only if stale was not set again while
// it was out. An inode read earlier (by an open, or a stat's attributes)
// may be older than what made f stale: clearing stale on it had a read
// answered from the old slices while the kernel had been told the new
// size, and the kernel cached the page at the old end of the file with
// zeros past it, which later reads returned as data.
func (f *file) refreshIfStale(ctx context.Context) {
	f.mu.Lock()
	stale, seq := f.stale, f.staleSeq
	f.mu.Unlock()
	if !stale {
		return
	}
	if in, err := f.fs.client.GetAttr(ctx, f.ino); err == nil {
		f.mu.Lock()
		f.refreshLocked(in)
		if in.Generation >= f.gen && f.staleSeq == seq {
			f.stale, f.staleGen = false, 0
		}
		f.mu.Unlock()
	}
}

// refreshLocked takes the committed state from an inode read from the
// filer, if it is newer than what f has.
func (f *file) refreshLocked(in *filer.Inode) {
	if in.Generation > f.gen {
		f.setCommittedLocked(in)
	}
}

// pagesCurrentLocked reports whether what the kernel caches of the file
// may be kept past an open at f's generation: nothing announced or read
// since from a change elsewhere, and no failed flush (see keepCache).
func (f *file) pagesCurrentLocked() bool {
	return !f.stale && !f.mixed && f.err == nil && f.lost == nil
}

func (f *file) hasDirtyLocked() bool { return !f.dirty.empty() || f.flushing != nil }

// sizeLocked is the size the application sees: the committed size or the
// end of buffered data, whichever is larger.
func (f *file) sizeLocked() uint64 { return f.sizeOverLocked(f.size) }

// sizeOverLocked is the size the application sees over a committed size.
func (f *file) sizeOverLocked(committed uint64) uint64 {
	s := max(committed, f.dirty.end())
	if f.flushing != nil {
		s = max(s, f.flushing.end())
	}
	return s
}

// write buffers data at off. If the file (or the mount) holds too much
// buffered data, it first flushes; if that fails the write is refused
// with the flush's error and nothing is buffered.
func (f *file) write(ctx context.Context, off uint64, data []byte) error {
	if off+uint64(len(data)) > filer.MaxFileSize {
		return syscall.EFBIG
	}
	lim := f.fs.limits
	f.mu.Lock()
	// Past the file's bound while the background flush runs: wait until
	// it takes the buffered data for its next flush (or stops), not until
	// everything is stored, so that this writer fills the next flush's
	// data while the current one uploads.
	for int64(f.dirty.bytes) >= lim.file && f.bgFlush && f.err == nil && f.lost == nil {
		f.progress.Wait()
	}
	over := int64(f.dirty.bytes) >= lim.file
	f.mu.Unlock()
	if over || f.fs.dirtyBytes.Load() >= lim.total || f.fs.memBytes.Load() >= lim.mem {
		if err := f.flush(ctx); err != nil {
			return err
		}
		if f.fs.dirtyBytes.Load() >= lim.total || f.fs.memBytes.Load() >= lim.mem {
			if err := f.fs.flushAll(ctx); err != nil {
				return err
			}
		}
	}
	f.mu.Lock()
	before, beforeMem := f.dirty.bytes, f.dirty.mem
	werr := f.dirty.write(off, data)
	f.mtime = time.Now().UnixNano()
	if werr == nil && f.fs.spill != nil && f.fs.memBytes.Load()+int64(f.dirty.mem-beforeMem) >= lim.mem {
		// Past the memory bound: move this file's spans to the spill
		// file. When it is full (or the cache directory is), the bytes
		// stay in memory and the next write waits for flushes.
		f.spillLocked()
	}
	f.fs.addDirty(int64(f.dirty.bytes)-int64(before), int64(f.dirty.mem)-int64(beforeMem))
	if werr != nil {
		f.mu.Unlock()
		f.fs.log.Error("writing buffered data to the spill file in the cache directory failed; the write is refused (check the cache directory's disk)",
			"ino", f.ino, "err", werr)
		return werr
	}
	if f.pend == noSlot {
		// Listed before the kernel hears the write succeeded.
		f.pend = f.fs.pending.add(f.ino)
	}
	// A full needle's worth starts a flush in the background, so the
	// upload overlaps the writes that follow. Its failure sticks like any
	// other and is reported by the next fsync, close or throttled write.
	kick := f.dirty.bytes >= maxNeedle && !f.bgFlush && f.err == nil
	if kick {
		f.bgFlush = true
	}
	f.preUploadLocked()
	f.mu.Unlock()
	if kick {
		go f.backgroundFlush()
	}
	return nil
}

// backgroundFlush flushes while a needle's worth or more is buffered, so
// uploads run back to back behind a sequential writer: each flush takes
// everything written during the previous one (several needles, uploaded
// in parallel, when the writer is faster than one upload). It stops at the
// first error, which sticks.
func (f *file) backgroundFlush() {
	for {
		err := f.flushFull(f.fs.ctx)
		f.mu.Lock()
		if err != nil || f.dirty.bytes < maxNeedle {
			f.bgFlush = false
			f.progress.Broadcast()
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
}

// preUploadLocked starts uploading the full spans (a needle's worth, in
// memory) near the end of the dirty set that no upload has taken yet, up
// to uploadParallel at a time per file. A sequential writer's needles so
// start uploading as soon as each is full, while the flush before them
// still uploads or commits: the volume servers are never left idle
// between two flushes, which commit in order as before. An upload ahead
// commits nothing: the flush that takes the span waits for it and commits
// its needle with the rest (or uploads the span again if it failed), so
// fsync, close and the sticky error work as without it.
func (f *file) preUploadLocked() {
	if f.err != nil || f.lost != nil || f.preErr != nil {
		return
	}
	spans := f.dirty.spans
	for i := max(0, len(spans)-preUploadScan); i < len(spans) && f.preRunning < uploadParallel; i++ {
		s := &spans[i]
		if s.pre != nil || s.slot != nil || len(s.data) != maxSpan {
			continue
		}
		p := &preUpload{done: make(chan struct{}), at: time.Now()}
		s.pre = p
		f.preRunning++
		go f.preUpload(p, s.data)
	}
}

// preUploadScan is how many spans from the end of the dirty set
// preUploadLocked looks at: a sequential writer fills them in order, so a
// span that became full is one of the last.
const preUploadScan = 2 * uploadParallel

// preUpload stores data, a full span's bytes, as a needle for p. The span
// is not changed while it runs (see span.detach).
func (f *file) preUpload(p *preUpload, data []byte) {
	p.fid, p.err = f.fs.data.Write(f.fs.ctx, data, f.fs.cfg.Collection, f.fs.cfg.Replication)
	close(p.done)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.preRunning--
	if p.err != nil {
		if f.preErr == nil {
			f.fs.log.Warn("uploading file data ahead of a flush failed; the data stays buffered and the next flush uploads it again",
				"ino", f.ino, "bytes", len(data), "err", p.err)
		}
		f.preErr = p.err
		return
	}
	f.preUploadLocked()
}

// flush makes every byte written before the call durable, or returns why
// it could not (then the bytes stay buffered and the error sticks).
func (f *file) flush(ctx context.Context) error { return f.flushWith(ctx, false) }

// flushFull is the background flush's round: like flush, except that the
// span a sequential writer is filling stays buffered (see takeHead), so
// that it becomes one full needle rather than a short one cut off by the
// round. Everything written before a flush or fsync is still flushed by
// those.
func (f *file) flushFull(ctx context.Context) error { return f.flushWith(ctx, true) }

// flushWith is flush, or with keepTail flushFull.
func (f *file) flushWith(ctx context.Context, keepTail bool) error {
	// Nothing buffered, nothing being stored, no error to report: every
	// byte written is durable already, and there is no need to wait
	// behind another handle's flush (close of a file only read, or a
	// second fsync).
	f.mu.Lock()
	idle := f.dirty.empty() && f.flushing == nil && f.err == nil
	lost := f.lost
	f.mu.Unlock()
	if lost != nil {
		return lost
	}
	if idle {
		return nil
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	return f.flushRound(ctx, keepTail)
}

// flushLocked is flush with flushMu held.
func (f *file) flushLocked(ctx context.Context) error {
	return f.flushRound(ctx, false)
}

// flushRound takes the dirty set (all of it, or with keepTail its head,
// see takeHead) and stores and commits it; flushMu is held.
func (f *file) flushRound(ctx context.Context, keepTail bool) error {
	f.mu.Lock()
	if f.dirty.empty() {
		f.err = nil
		f.unlistIfStoredLocked()
		f.mu.Unlock()
		return nil
	}
	var set *dirtySet
	if keepTail {
		set = f.dirty.takeHead()
	}
	whole := set == nil
	if whole {
		set = f.dirty
		f.dirty = newDirtySet(f.fs.spill)
	}
	f.flushing = set
	// With a tail kept, the size committed is what the taken spans reach
	// (the span left behind is not stored yet); otherwise f.dirty is
	// empty here and this is the size the application sees.
	size := max(f.size, set.end())
	mtime := f.mtime
	f.progress.Broadcast()
	f.mu.Unlock()

	in, err := f.upload(ctx, set, size, mtime)

	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushing = nil
	f.progress.Broadcast()
	if err != nil {
		// Keep the data: it goes back under what was written meanwhile.
		// under merges into set itself: take its size first.
		before, setBytes := f.dirty.bytes, set.bytes
		beforeMem, setMem := f.dirty.mem, set.mem
		merged, uerr := set.under(f.dirty)
		merged.forgetPre()
		f.dirty = merged
		f.fs.addDirty(int64(f.dirty.bytes)-int64(before)-int64(setBytes), int64(f.dirty.mem)-int64(beforeMem)-int64(setMem))
		if uerr != nil {
			// The spill file failed us: the buffered bytes are not
			// what was written. Nothing may report success for them
			// again; the error stays until the file is reopened.
			f.lost = fmt.Errorf("fuse: buffered data of inode %d was lost by the spill file: %w", f.ino, uerr)
			f.fs.log.Error("buffered data could not be read back from the spill file; fsync and close of the file fail until it is reopened",
				"ino", f.ino, "err", uerr)
		}
		f.err = err
		return err
	}
	f.fs.addDirty(-int64(set.bytes), -int64(set.mem))
	set.recycle()
	f.preErr = nil
	if in != nil { // nil when followCommit updated f itself
		f.setCommittedLocked(in)
	}
	if whole {
		// Every byte written before the round is stored. (A kept tail
		// may hold bytes of a failed flush: its error stays until a
		// flush stores them.)
		f.err = nil
	}
	f.unlistIfStoredLocked()
	return nil
}

// unlistIfStoredLocked takes the file off the record of unstored writes
// once nothing it buffered is left to store.
func (f *file) unlistIfStoredLocked() {
	if f.pend != noSlot && f.dirty.empty() && f.flushing == nil {
		f.fs.pending.remove(f.pend)
		f.pend = noSlot
	}
}

// upload stores set as needles (in parallel) and commits them with size.
// It returns the inode to take the committed state from, or nil when f
// already holds it.
func (f *file) upload(ctx context.Context, set *dirtySet, size uint64, mtime int64) (*filer.Inode, error) {
	if in, done, err := f.commitInline(ctx, set, size, mtime); done {
		return in, err
	}
	needles := set.pack(maxNeedle)
	sem := make(chan struct{}, uploadParallel)
	errs := make(chan error, len(needles))
	var wg sync.WaitGroup
	for _, n := range needles {
		wg.Add(1)
		if n.pre == nil {
			sem <- struct{}{}
		}
		go func() {
			defer wg.Done()
			if n.pre != nil {
				// Uploaded ahead of this flush: its needle is
				// committed below, unless the upload failed.
				<-n.pre.done
				if n.pre.usable() {
					n.fid = n.pre.fid
					return
				}
				sem <- struct{}{}
			}
			defer func() { <-sem }()
			data, err := set.needleData(n)
			if err != nil {
				errs <- err
				return
			}
			fid, err := f.fs.data.Write(ctx, data, f.fs.cfg.Collection, f.fs.cfg.Replication)
			if err != nil {
				errs <- err
				return
			}
			n.fid = fid
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		f.fs.log.Error("storing file data on the volume servers failed; the data stays buffered and fsync/close report the error until a retry succeeds",
			"ino", f.ino, "bytes", set.bytes, "err", err)
		return nil, err
	}
	var sl []filer.Slice
	for _, n := range needles {
		pos := uint64(0)
		for _, p := range n.parts {
			sl = append(sl, filer.Slice{Off: p.fileOff, Len: uint64(p.n), Fid: n.fid, NeedleOff: pos})
			pos += uint64(p.n)
		}
	}
	res, err := f.fs.client.Apply(ctx, &filer.CommitSlices{Ino: f.ino, Slices: sl, Size: size, Mtime: mtime, OmitSlices: true})
	if err != nil {
		f.fs.log.Error("committing file data to the filer failed; the data stays buffered and fsync/close report the error until a retry succeeds",
			"ino", f.ino, "bytes", set.bytes, "err", err)
		return nil, err
	}
	mountFlushes.WithLabelValues("volumes").Inc()
	return f.followCommit(ctx, res.Inode, sl), nil
}

// commitInline commits a small flush with its bytes to the filer (inline
// data: the Raft log's fsync is its only durable step; filer/inline.go),
// when set is within the mount's inline limit and the filer takes inline
// data. done is false when set is for the volume servers instead.
func (f *file) commitInline(ctx context.Context, set *dirtySet, size uint64, mtime int64) (in *filer.Inode, done bool, err error) {
	limit := f.fs.inlineLimit()
	if limit < 0 || set.bytes > uint64(limit) || len(set.spans) > filer.MaxInlineSlices || set.hasPre() {
		return nil, false, nil
	}
	var inl []filer.InlineData
	for _, n := range set.pack(limit) {
		data, err := set.needleData(n)
		if err != nil {
			return nil, true, err
		}
		pos := 0
		for _, p := range n.parts {
			inl = append(inl, filer.InlineData{Off: p.fileOff, Data: data[pos : pos+p.n]})
			pos += p.n
		}
	}
	res, err := f.fs.client.Apply(ctx, &filer.CommitSlices{Ino: f.ino, Inline: inl, Size: size, Mtime: mtime, OmitSlices: true})
	if status.Code(err) == codes.InvalidArgument && f.fs.noInline.CompareAndSwap(false, true) {
		// A filer from before inline data refuses the command's
		// version; nothing was applied. Store data on the volume
		// servers from now on.
		f.fs.log.Warn("the filer does not take inline data (an older version); small writes go to the volume servers first", "err", err)
		return nil, false, nil
	}
	if err != nil {
		f.fs.log.Error("committing file data to the filer failed; the data stays buffered and fsync/close report the error until a retry succeeds",
			"ino", f.ino, "bytes", set.bytes, "err", err)
		return nil, true, err
	}
	if len(res.Fids) != len(inl) {
		return nil, true, fmt.Errorf("fuse: the filer named %d of %d inline writes of inode %d", len(res.Fids), len(inl), f.ino)
	}
	mountFlushes.WithLabelValues("filer").Inc()
	sl := make([]filer.Slice, len(inl))
	for i, d := range inl {
		sl[i] = filer.Slice{Off: d.Off, Len: uint64(len(d.Data)), Fid: res.Fids[i]}
	}
	return f.followCommit(ctx, res.Inode, sl), true, nil
}

// followCommit brings f's committed state past a CommitSlices of sl that
// left inode in (without its slice list: the filer omits it). When the
// commit came right after the generation f knows, f's pieces plus sl are the
// filer's list, and f is updated in place (nil is returned); otherwise
// someone else changed the file too, and the inode with its list is
// fetched and returned. The data is durable either way: if the fetch
// fails, f's pieces plus sl (which show this mount's writes) are used and
// marked stale, so the next read refetches.
func (f *file) followCommit(ctx context.Context, in *filer.Inode, sl []filer.Slice) *filer.Inode {
	if gap := f.fs.testGap.Load(); gap != nil {
		(*gap)("commit", f.ino)
	}
	f.mu.Lock()
	exact := in.Generation == f.gen+1
	if exact {
		f.followLocked(in, sl)
	}
	// A getattr between the filer's commit and this may have taken the
	// state it left (or a later one) already.
	known := in.Generation <= f.gen
	if known {
		f.ownChangeLocked(in)
	}
	f.mu.Unlock()
	if exact || known {
		return nil
	}
	// Someone else changed the file too: the kernel's pages of it may
	// hold their overwritten bytes.
	f.fs.dropPages(f.ino)
	full, err := f.fs.client.GetAttr(ctx, f.ino)
	if err == nil && full.Generation >= in.Generation {
		return full
	}
	f.mu.Lock()
	f.followLocked(in, sl)
	f.markStaleLocked(anyGen)
	f.mu.Unlock()
	return nil
}

// followLocked places sl over f's pieces and takes size and generation
// from in.
func (f *file) followLocked(in *filer.Inode, sl []filer.Slice) {
	for _, s := range sl {
		f.pieces.Place(s)
	}
	f.ownChangeLocked(in)
	f.size, f.gen = in.Size, in.Generation
	f.clearStaleIfCurrentLocked()
}

// stickyErr is the error of the last failed flush, nil if none.
func (f *file) stickyErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// read returns up to n bytes at off: buffered writes over committed data,
// zeros in holes, short at the end of the file. The bytes may be the
// chunk cache's own (see chunkCache.view): the caller must not modify
// them, and must call release (never nil) once it no longer reads them.
func (f *file) read(ctx context.Context, off uint64, n int) (b []byte, release func(), err error) {
	b, release, err = f.readOnce(ctx, off, n)
	if err == nil || errors.Is(err, context.Canceled) {
		return b, release, err
	}
	// The slices this mount knew may have been replaced meanwhile (another
	// mount's write, or the filer compacting the file) and their needles
	// deleted: if the filer has a newer generation, read again with it.
	f.mu.Lock()
	gen := f.gen
	f.mu.Unlock()
	in, gerr := f.fs.client.GetAttr(ctx, f.ino)
	if gerr != nil || in.Generation <= gen {
		return nil, nop, err
	}
	f.fs.dropPages(f.ino)
	f.mu.Lock()
	f.refreshLocked(in)
	f.mu.Unlock()
	return f.readOnce(ctx, off, n)
}

// readOnce is read with the slice list the file holds now. release is
// never nil, even with an error.
func (f *file) readOnce(ctx context.Context, off uint64, n int) ([]byte, func(), error) {
	f.refreshIfStale(ctx)
	f.mu.Lock()
	size := f.sizeLocked()
	if off >= size {
		f.mu.Unlock()
		return nil, nop, nil
	}
	want := min(uint64(n), size-off)
	end := off + want
	// Nothing buffered over a committed range: the bytes may come
	// straight from the chunk cache, without a copy (see below).
	direct := end <= f.size && !f.bufferedLocked(off, end)
	var buf []byte
	// Copy the buffered bytes now; what they do not cover comes from the
	// committed slices, which are immutable once listed.
	var covered byterange.Coverage
	if !direct {
		buf = make([]byte, want)
		for _, set := range []*dirtySet{f.flushing, f.dirty} {
			if set == nil {
				continue
			}
			cov, err := set.overlay(off, buf)
			if err != nil {
				f.mu.Unlock()
				f.fs.log.Error("reading buffered data back from the spill file failed", "ino", f.ino, "err", err)
				return nil, nop, err
			}
			for _, s := range cov {
				covered = covered.Add(s.off, s.end())
			}
		}
	}
	var exts []filer.Extent
	if f.size > off {
		exts = f.pieces.Extents(off, min(end, f.size)-off)
	}
	// A read far from where the previous one ended fetches small pieces: a
	// random reader needs only what it asked for. (Near is within the
	// kernel's read-ahead window, whose reads may arrive out of order.)
	random := off+seqSlack < f.seqNext || off > f.seqNext+seqSlack
	taken := f.taken
	f.mu.Unlock()

	// The usual read of a sequential or random reader lies within one
	// slice and one cached piece: hand out that piece's bytes as they are
	// (the reply to the kernel copies them once), instead of allocating a
	// buffer and copying them into it first.
	if direct && len(exts) == 1 && exts[0].Fid != "" && exts[0].Off == off && exts[0].Len == want {
		e := exts[0]
		b, release, ok, err := f.fs.cache.view(ctx, f.fs.ctx, e.Fid, e.NeedleOff, int(want), random)
		if err != nil {
			f.fs.log.Warn("reading file data from the volume servers failed", "ino", f.ino, "fid", e.Fid, "err", err)
			return nil, nop, err
		}
		if ok {
			if uint64(len(b)) != want {
				release()
				return nil, nop, fmt.Errorf("fuse: needle %s of inode %d is shorter than its slice: %w", e.Fid, f.ino, errShortNeedle)
			}
			f.readDone(taken, off, end)
			return b, release, nil
		}
	}
	if buf == nil {
		buf = make([]byte, want)
	}
	for _, e := range exts {
		if e.Fid == "" {
			continue // a hole: buf is zero there, or holds newer buffered bytes
		}
		for _, iv := range covered.Uncovered(e.Off, e.Off+e.Len) {
			dst := buf[iv.Lo-off : iv.Hi-off]
			got, err := f.fs.cache.read(ctx, f.fs.ctx, e.Fid, e.NeedleOff+iv.Lo-e.Off, dst, random)
			if err != nil {
				f.fs.log.Warn("reading file data from the volume servers failed", "ino", f.ino, "fid", e.Fid, "err", err)
				return nil, nop, err
			}
			if got != len(dst) {
				return nil, nop, fmt.Errorf("fuse: needle %s of inode %d is shorter than its slice: %w", e.Fid, f.ino, errShortNeedle)
			}
		}
	}
	f.readDone(taken, off, end)
	return buf, nop, nil
}

// bufferedLocked reports whether buffered writes (being flushed or not)
// cover any byte of [off, end).
func (f *file) bufferedLocked(off, end uint64) bool {
	for _, set := range []*dirtySet{f.flushing, f.dirty} {
		if set == nil {
			continue
		}
		i := sort.Search(len(set.spans), func(i int) bool { return set.spans[i].end() > off })
		if i < len(set.spans) && set.spans[i].off < end {
			return true
		}
	}
	return false
}

// readDone ends a read of [off, end) that took the committed state at
// taken: it notes a read of slices older than the file's (see mixed) and
// starts read-ahead.
func (f *file) readDone(taken, off, end uint64) {
	f.mu.Lock()
	if f.taken != taken {
		// Read with slices the file had before a change that came
		// from the filer (another mount's, maybe): the kernel may now
		// cache bytes older than f's generation, so they must not
		// outlive this open (see keepCache). This mount's own writes
		// are ordered against reads by the kernel's page locks.
		f.mixed = true
	}
	f.mu.Unlock()
	f.readAhead(off, end)
}

// readAhead keeps the chunks of the readAhead bytes past the furthest
// point a sequential reader reached fetched or being fetched, so that it
// finds them cached. A read is sequential when it starts where one of the
// last few reads ended (or is the file's first read, at 0): the kernel's
// read-ahead sends several reads at once and they may be served out of
// order, so a read may arrive before the one it continues. A read further
// than the kernel's window from the furthest point (a seek, or another
// reader of the file) starts over from where it ends; a nearer one that
// continues no recent read changes nothing.
func (f *file) readAhead(off, end uint64) {
	f.mu.Lock()
	seq := off == 0 && f.reads == 0 || slices.Contains(f.readEnds[:], off+1)
	f.readEnds[f.reads%uint64(len(f.readEnds))] = end + 1
	f.reads++
	if off+kernelReadAhead < f.seqNext || off > f.seqNext+kernelReadAhead {
		f.seqNext, f.raEnd = end, 0
	}
	if !seq {
		f.mu.Unlock()
		return
	}
	f.seqNext = max(f.seqNext, end)
	from := max(f.seqNext, f.raEnd)
	to := min(f.seqNext+readAhead, f.size)
	if from >= to {
		f.mu.Unlock()
		return
	}
	f.raEnd = to
	exts := f.pieces.Extents(from, to-from)
	f.mu.Unlock()
	for _, e := range exts {
		if e.Fid == "" {
			continue
		}
		first := e.NeedleOff / chunkSize
		last := (e.NeedleOff + e.Len - 1) / chunkSize
		for i := first; i <= last; i++ {
			if !f.fs.cache.startPrefetch(f.fs.ctx, chunkKey{e.Fid, chunkSize, i}) {
				// Every read-ahead fetch is busy: the next
				// sequential read tries again from this chunk.
				at := e.Off + max(i*chunkSize, e.NeedleOff) - e.NeedleOff
				f.mu.Lock()
				f.raEnd = min(f.raEnd, at)
				f.mu.Unlock()
				return
			}
		}
	}
}

var (
	errShortNeedle = errors.New("short needle")
)

// seqSlack is how far from the furthest end of a sequential read a read
// may start and still count as sequential for the size of what it
// fetches: the kernel's read-ahead sends reads that may be served out of
// order. (Reads further ahead in the kernel's window find their chunk
// read ahead already.) Kept small: a random reader whose read lands this
// near fetches a whole chunk.
const seqSlack = 1 << 20

// spillLocked moves the file's buffered spans to the spill file, as far
// as it has room. A full spill file or cache directory is no error for
// the writer: the bytes stay in memory, and the memory bound makes the
// next write wait for flushes.
func (f *file) spillLocked() {
	moved, err := f.dirty.spill()
	f.fs.spilled.Add(int64(moved))
	switch {
	case err == nil:
		f.fs.spillWarned.Store(false)
	case errors.Is(err, errSpillFull) || isNoSpace(err):
		if !f.fs.spillWarned.Swap(true) {
			f.fs.log.Warn("the spill file in the cache directory is full; buffered writes stay in memory and writers wait for uploads",
				"ino", f.ino, "err", err)
		}
	default:
		if !f.fs.spillWarned.Swap(true) {
			f.fs.log.Error("moving buffered writes to the spill file in the cache directory failed; they stay in memory and writers wait for uploads (check the cache directory's disk)",
				"ino", f.ino, "err", err)
		}
	}
}

// writerDirtyLimit is the buffered bytes of one file past which a writer
// waits for a flush: room for two rounds of uploads in flight behind a
// sequential writer while it fills the next.
const writerDirtyLimit = 2 * uploadParallel * maxNeedle
