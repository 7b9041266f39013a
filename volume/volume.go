package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// File name extensions in a store directory.
const (
	extData    = ".dat" // a volume file: superblock and records
	extCompact = ".cpd" // a volume file being written by Vacuum
	extTemp    = ".tmp" // a volume file being created
)

// IndexEntry describes the latest record of a key.
type IndexEntry struct {
	Key      uint64
	Cookie   uint32
	Size     uint32 // data length
	AppendNs uint64
	CRC      uint32 // CRC32C of the data, from the record header
	Deleted  bool
}

// Info is a summary of a volume for heartbeats and admin tools.
type Info struct {
	ID                      uint32
	Collection, Replication string
	Size                    uint64 // bytes in the volume file
	NeedleCount             uint64 // live needles
	DeletedCount            uint64 // keys whose latest record is a tombstone
	DeletedBytes            uint64 // bytes Vacuum would reclaim
	ReadOnly                bool
	ReadOnlyReason          string // why, when ReadOnly
	Err                     string // the IO error that made the volume read-only, if any
	CorruptCount            uint64 // needles known to fail their checksum
	DamagedBytes            uint64 // unreadable bytes skipped when the volume was opened
}

// entry is the in-memory index entry of a key: where its latest record is.
type entry struct {
	off      int64
	format   format
	dataLen  uint32
	cookie   uint32
	appendNs uint64
	crc      uint32
	deleted  bool
	corrupt  bool // the record's data failed its CRC
}

func (e entry) size() int64 { return recordSize(e.format, e.dataLen) }

// Volume is one append-only volume file and its in-memory index.
//
// All methods are safe for concurrent use. Write, WriteRecord, Delete and
// Vacuum are serialized by one writer goroutine that appends concurrent
// writes as a batch, and a syncer goroutine makes the batches appended so
// far durable with one fdatasync (group commit; see run); Read,
// ReadRecord, Index, Info and Verify run concurrently with them and see a
// record only after it is on stable storage.
type Volume struct {
	fs   vfs.FS
	dir  string
	base string // file name without extension
	sb   superblock
	log  *slog.Logger

	reqs      chan *request // to the writer; unbuffered
	quit      chan struct{} // closed by Close: the writer stops
	stopped   chan struct{} // closed when the writer has exited
	closeOnce sync.Once

	syncs, batched atomic.Uint64
	observer       atomic.Pointer[func(batch int)]
	commits        commitStats                 // group-commit latency and batch sizes
	cache          atomic.Pointer[needleCache] // verified needles; nil: none

	w         writerState // the writer goroutine's own
	pipe      pipeline    // from the writer goroutine to the syncer
	holdBytes int         // holdBytes; tests lower it to 0 (no hold)

	// mu guards the fields in it. Only the writer goroutine changes file
	// (holding the write lock, with no batch in flight), and it may read it
	// without the lock. size, index and lastNs cover synced records only:
	// the syncer goroutine adds a batch to them once it is durable; the
	// writer changes them in vacuum, with no batch in flight.
	mu struct {
		sync.RWMutex
		file        vfs.File // nil once closed
		size        int64    // bytes of the file known durable
		index       map[uint64]entry
		lastNs      uint64 // highest AppendNs in size
		live, tombs uint64
		corrupt     uint64
		garbage     uint64 // bytes of superseded records
		damaged     uint64 // bytes skipped at open
		readOnly    string // operator's reason; "" if writable
		fatal       error  // IO failure: read-only until reopened
	}
}

func (v *Volume) path(ext string) string { return filepath.Join(v.dir, v.base+ext) }

// OpenVolume opens volume id of collection in dir, creating it crash-safely
// if it does not exist (dir must exist). An existing volume must have the
// same id, collection and replication ("" means "000"). Opening recovers
// from a crash: it truncates a torn tail, skips (and logs) damaged regions
// in the middle of the file, indexes records whose data fails its CRC as
// corrupt, and removes a leftover compaction file.
func OpenVolume(fsys vfs.FS, dir string, id uint32, collection, replication string) (*Volume, error) {
	repl, err := normReplication(replication)
	if err != nil {
		return nil, err
	}
	return openVolume(fsys, dir, superblock{id: id, collection: collection, replication: repl}, true)
}

// openVolume opens (and with create, creates) a volume. An empty
// sb.replication accepts any.
func openVolume(fsys vfs.FS, dir string, sb superblock, create bool) (*Volume, error) {
	if err := ValidCollection(sb.collection); err != nil {
		return nil, err
	}
	v := &Volume{
		fs:        fsys,
		dir:       dir,
		base:      fileBase(sb.collection, sb.id),
		log:       slog.Default().With("volume", sb.id, "collection", sb.collection),
		reqs:      make(chan *request),
		holdBytes: holdBytes,
		quit:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	if err := v.removeLeftovers(); err != nil {
		return nil, err
	}
	f, err := fsys.OpenFile(v.path(extData), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) && create {
		f, err = v.create(sb)
	}
	if err != nil {
		return nil, fmt.Errorf("volume: open %s: %w", v.path(extData), err)
	}
	v.mu.file = f
	v.mu.index = make(map[uint64]entry)
	if err := v.load(sb); err != nil {
		f.Close()
		return nil, err
	}
	go v.run()
	return v, nil
}

// removeLeftovers removes files of an interrupted create or vacuum; the
// .dat file is authoritative.
func (v *Volume) removeLeftovers() error {
	removed := false
	for _, ext := range []string{extCompact, extTemp} {
		err := v.fs.Remove(v.path(ext))
		switch {
		case err == nil:
			v.log.Warn("removed leftover file of an interrupted vacuum or create", "file", v.path(ext))
			removed = true
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("volume: remove leftover %s: %w", v.path(ext), err)
		}
	}
	if removed {
		if err := v.fs.SyncDir(v.dir); err != nil {
			return fmt.Errorf("volume: sync directory %s: %w", v.dir, err)
		}
	}
	return nil
}

// create writes a new volume file: temp file, fsync, rename, fsync dir.
func (v *Volume) create(sb superblock) (vfs.File, error) {
	tmp := v.path(extTemp)
	if err := writeFileSynced(v.fs, tmp, sb.encode()); err != nil {
		v.fs.Remove(tmp)
		return nil, err
	}
	if err := v.fs.Rename(tmp, v.path(extData)); err != nil {
		v.fs.Remove(tmp)
		return nil, err
	}
	if err := v.fs.SyncDir(v.dir); err != nil {
		return nil, err
	}
	return v.fs.OpenFile(v.path(extData), os.O_RDWR, 0)
}

func writeFileSynced(fsys vfs.FS, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// applyLocked indexes a record at off under the merge rule: the higher
// AppendNs wins, on a tie the later record (this one) wins.
func (v *Volume) applyLocked(key uint64, e entry) {
	old, ok := v.mu.index[key]
	if ok && e.appendNs < old.appendNs {
		v.mu.garbage += uint64(e.size())
		return
	}
	if ok {
		v.mu.garbage += uint64(old.size())
		v.countLocked(old, -1)
	}
	v.mu.index[key] = e
	v.countLocked(e, +1)
}

func (v *Volume) countLocked(e entry, d int) {
	add := func(c *uint64) { *c = uint64(int64(*c) + int64(d)) }
	if e.deleted {
		add(&v.mu.tombs)
	} else {
		add(&v.mu.live)
	}
	if e.corrupt {
		add(&v.mu.corrupt)
	}
}

// ID returns the volume id.
func (v *Volume) ID() uint32 { return v.sb.id }

// Read returns the live needle key if its cookie matches, verifying the data
// CRC (and in format 2 every block CRC). Errors: ErrNotFound,
// ErrCookieMismatch, ErrDeleted, ErrCorrupt, ErrClosed, or an IO error.
func (v *Volume) Read(key uint64, cookie uint32) (*Needle, error) {
	v.mu.RLock()
	e, err := v.liveLocked(key, cookie)
	if err != nil {
		v.mu.RUnlock()
		return nil, err
	}
	ck := cacheKey{vol: v, key: key, appendNs: e.appendNs, off: e.off}
	cache := v.cache.Load()
	if n := cache.get(ck); n != nil {
		v.mu.RUnlock()
		return n, nil
	}
	n, err := v.readAndUnlock(key, e, nil)
	if err == nil {
		cache.put(ck, n)
	}
	return n, err
}

// liveLocked returns the index entry of the live needle key with cookie.
func (v *Volume) liveLocked(key uint64, cookie uint32) (entry, error) {
	e, ok := v.mu.index[key]
	switch {
	case v.mu.file == nil:
		return entry{}, fmt.Errorf("volume: read %d from %s: %w", key, v.base, ErrClosed)
	case !ok:
		return entry{}, fmt.Errorf("volume: needle %d in volume %s: %w", key, v.base, ErrNotFound)
	case e.cookie != cookie:
		return entry{}, fmt.Errorf("volume: needle %d in volume %s: %w", key, v.base, ErrCookieMismatch)
	case e.deleted:
		return entry{}, fmt.Errorf("volume: needle %d in volume %s: %w", key, v.base, ErrDeleted)
	}
	return e, nil
}

// Stat returns the index entry of the live needle key if its cookie
// matches, without reading the disk. Errors: those of Read but ErrCorrupt
// and IO errors.
func (v *Volume) Stat(key uint64, cookie uint32) (IndexEntry, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	e, err := v.liveLocked(key, cookie)
	if err != nil {
		return IndexEntry{}, err
	}
	return IndexEntry{Key: key, Cookie: e.cookie, Size: e.dataLen, AppendNs: e.appendNs, CRC: e.crc}, nil
}

// setCache makes Read keep verified needles in c (shared by a store's
// volumes). The needles Read returns must not be modified.
func (v *Volume) setCache(c *needleCache) { v.cache.Store(c) }

// ReadRecord returns the latest record of key (a needle or a tombstone),
// verified, as stored on disk: the input of WriteRecord on another replica.
func (v *Volume) ReadRecord(key uint64) ([]byte, error) {
	v.mu.RLock()
	e, ok := v.mu.index[key]
	if v.mu.file == nil {
		v.mu.RUnlock()
		return nil, fmt.Errorf("volume: read %d from %s: %w", key, v.base, ErrClosed)
	}
	if !ok {
		v.mu.RUnlock()
		return nil, fmt.Errorf("volume: needle %d in volume %s: %w", key, v.base, ErrNotFound)
	}
	rec, err := v.readRawLocked(key, e, nil)
	v.mu.RUnlock()
	if err == nil {
		_, err = verifyRecord(rec)
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			v.markCorrupt(key, e)
		}
		return nil, fmt.Errorf("volume: record %d in volume %s: %w", key, v.base, err)
	}
	return rec, nil
}

// readRawLocked reads the record of e from disk into rec (of e.size()
// bytes; nil: a new buffer) and checks it is e's record.
func (v *Volume) readRawLocked(key uint64, e entry, rec []byte) ([]byte, error) {
	if e.corrupt {
		return nil, fmt.Errorf("volume: needle %d in volume %s failed its checksum; repair it from a replica: %w", key, v.base, ErrCorrupt)
	}
	if rec == nil {
		rec = make([]byte, e.size())
	}
	if n, err := v.mu.file.ReadAt(rec, e.off); n < len(rec) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("volume: read needle %d at offset %d of %s: %w", key, e.off, v.path(extData), err)
	}
	return rec, nil
}

// readLocked reads and checks the needle of e, into rec as readRawLocked
// does; its Data lies in that buffer.
func (v *Volume) readLocked(key uint64, e entry, rec []byte) (*Needle, error) {
	rec, err := v.readRawLocked(key, e, rec)
	if err != nil {
		return nil, err
	}
	h, err := verifyRecord(rec)
	if err == nil && (h.key != key || h.appendNs != e.appendNs) {
		err = fmt.Errorf("volume: record at offset %d is not needle %d: %w", e.off, key, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("volume: needle %d in volume %s needs repair from a replica: %w", key, v.base, err)
	}
	start := h.format.dataOffset(h.dataLen)
	return &Needle{ // rec is ours: the data need not be copied out
		Key:      h.key,
		Cookie:   h.cookie,
		AppendNs: h.appendNs,
		Deleted:  h.flags&flagTombstone != 0,
		Data:     rec[start : start+int64(h.dataLen) : start+int64(h.dataLen)],
		CRC:      h.dataCRC,
	}, nil
}

// readAndUnlock is readLocked with v.mu read-locked, which it unlocks
// before marking a needle it found corrupt.
func (v *Volume) readAndUnlock(key uint64, e entry, rec []byte) (*Needle, error) {
	n, err := v.readLocked(key, e, rec)
	v.mu.RUnlock()
	if err != nil && errors.Is(err, ErrCorrupt) {
		v.markCorrupt(key, e)
	}
	return n, err
}

// markCorrupt flags key's entry e as corrupt if it is still the latest.
func (v *Volume) markCorrupt(key uint64, e entry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur, ok := v.mu.index[key]; ok && cur == e && !e.corrupt {
		v.countLocked(cur, -1)
		cur.corrupt = true
		v.mu.index[key] = cur
		v.countLocked(cur, +1)
		v.log.Error("needle failed its checksum; it needs repair from a replica", "key", key, "offset", e.off)
	}
}

// Index returns the latest entry of every key, tombstones included, sorted
// by key.
func (v *Volume) Index() []IndexEntry {
	v.mu.RLock()
	out := make([]IndexEntry, 0, len(v.mu.index))
	for k, e := range v.mu.index {
		out = append(out, IndexEntry{Key: k, Cookie: e.cookie, Size: e.dataLen, AppendNs: e.appendNs, CRC: e.crc, Deleted: e.deleted})
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b IndexEntry) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}

// Info returns a summary of the volume.
func (v *Volume) Info() Info {
	v.mu.RLock()
	defer v.mu.RUnlock()
	in := Info{
		ID:             v.sb.id,
		Collection:     v.sb.collection,
		Replication:    v.sb.replication,
		Size:           uint64(v.mu.size),
		NeedleCount:    v.mu.live,
		DeletedCount:   v.mu.tombs,
		DeletedBytes:   v.mu.garbage + v.mu.damaged,
		ReadOnlyReason: v.mu.readOnly,
		CorruptCount:   v.mu.corrupt,
		DamagedBytes:   v.mu.damaged,
	}
	if v.mu.fatal != nil {
		in.Err = v.mu.fatal.Error()
		if in.ReadOnlyReason == "" {
			in.ReadOnlyReason = "IO error: " + in.Err
		}
	}
	in.ReadOnly = in.ReadOnlyReason != ""
	return in
}

// Stats returns the number of successful fdatasyncs of write batches and
// the number of writes (Write, WriteRecord, Delete) they committed.
func (v *Volume) Stats() (syncs, batchedWrites uint64) {
	return v.syncs.Load(), v.batched.Load()
}

// SetBatchObserver registers f, called by the syncer goroutine with the
// number of writes every successful fdatasync committed (for metrics). f
// must be fast.
func (v *Volume) SetBatchObserver(f func(batch int)) { v.observer.Store(&f) }

// SetReadOnly makes the volume reject writes with ErrReadOnly naming reason.
func (v *Volume) SetReadOnly(reason string) {
	if reason == "" {
		reason = "set read-only by the operator"
	}
	v.mu.Lock()
	v.mu.readOnly = reason
	v.mu.Unlock()
}

// ClearReadOnly undoes SetReadOnly. A volume made read-only by an IO failure
// (a failed fdatasync) stays read-only until it is closed and reopened,
// which re-reads the file from disk.
func (v *Volume) ClearReadOnly() {
	v.mu.Lock()
	v.mu.readOnly = ""
	v.mu.Unlock()
}

// writableErrLocked returns a wrapped ErrReadOnly if writes are refused.
func (v *Volume) writableErrLocked() error {
	if v.mu.fatal != nil {
		return fmt.Errorf("volume: %s is read-only after an IO error (%v); restart the volume server or move the volume: %w", v.base, v.mu.fatal, ErrReadOnly)
	}
	if v.mu.readOnly != "" {
		return fmt.Errorf("volume: %s is read-only (%s): %w", v.base, v.mu.readOnly, ErrReadOnly)
	}
	return nil
}

// setFatalLocked turns the volume read-only after an IO failure.
func (v *Volume) setFatalLocked(err error) {
	if v.mu.fatal == nil {
		v.mu.fatal = err
		v.log.Error("volume turned read-only after an IO error; check the disk, then restart the volume server", "err", err)
	}
}

// Verify re-reads every live needle and checks its CRC (a scrub). It returns
// the keys that fail, sorted; they read as ErrCorrupt until repaired.
func (v *Volume) Verify(ctx context.Context) (corrupt []uint64, err error) {
	for _, ie := range v.Index() {
		if ie.Deleted {
			continue
		}
		if err := ctx.Err(); err != nil {
			return corrupt, err
		}
		v.mu.RLock()
		e, ok := v.mu.index[ie.Key]
		if v.mu.file == nil {
			v.mu.RUnlock()
			return corrupt, fmt.Errorf("volume: verify %s: %w", v.base, ErrClosed)
		}
		if !ok || e.deleted {
			v.mu.RUnlock()
			continue
		}
		_, rerr := v.readLocked(ie.Key, e, nil)
		v.mu.RUnlock()
		switch {
		case errors.Is(rerr, ErrCorrupt):
			v.markCorrupt(ie.Key, e)
			corrupt = append(corrupt, ie.Key)
		case rerr != nil:
			return corrupt, rerr
		}
	}
	return corrupt, nil
}

// Close stops the writer (pending writes fail with ErrClosed) and closes the
// file. It is idempotent.
func (v *Volume) Close() error {
	var err error
	v.closeOnce.Do(func() {
		close(v.quit)
		<-v.stopped
		v.mu.Lock()
		defer v.mu.Unlock()
		err = v.mu.file.Close()
		v.mu.file = nil
	})
	return err
}

// Destroy closes the volume and removes its file, durably.
func (v *Volume) Destroy() error {
	if err := v.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		v.log.Warn("closing volume before removing it failed", "err", err)
	}
	for _, ext := range []string{extCompact, extTemp} {
		if err := v.fs.Remove(v.path(ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("volume: remove %s: %w", v.path(ext), err)
		}
	}
	if err := v.fs.Remove(v.path(extData)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("volume: remove %s: %w", v.path(extData), err)
	}
	if err := v.fs.SyncDir(v.dir); err != nil {
		return fmt.Errorf("volume: sync directory %s after removing volume %s: %w", v.dir, v.base, err)
	}
	return nil
}
