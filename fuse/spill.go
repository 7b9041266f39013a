package fuse

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spilling of buffered writes to the cache directory.
//
// A mount given a cache directory keeps at most its memory bound of
// buffered bytes in memory: past it, whole spans of the writing file's
// dirty set move to one spill file per mount (spillStore) and are read
// back with pread when read or uploaded. The spill file is created
// unlinked (O_TMPFILE, or created and removed at once), so nothing is
// left in the directory after a crash. Nothing is lost by that: spilled
// bytes are buffered bytes like the ones in memory, never acknowledged as
// durable; only fsync or close after a successful upload and commit
// acknowledge them.

// spillSlotSize is the size of one slot of the spill file: one span of
// at most maxSpan bytes.
const spillSlotSize = maxSpan

// spillMinSpan is the smallest span moved to the spill file: smaller
// spans (scattered small writes) stay in memory, where a slot's worth of
// file space per few KiB would be waste.
const spillMinSpan = 64 << 10

// errSpillFull is returned when every slot of the spill file is in use.
var errSpillFull = errors.New("fuse: the spill file is at its size limit")

// spillSlot is where a spilled span's bytes are: n bytes at at.
type spillSlot struct {
	at int64
	n  int
}

// spillStore is a mount's spill file: fixed slots of spillSlotSize
// bytes, at most limit bytes of them. A freed slot's space is given back
// to the file system (hole punched) and the slot reused.
//
// Safe for concurrent use: the allocator has its own mutex (a leaf in the
// lock order), and pread/pwrite of distinct slots do not conflict. The
// bytes of one slot are read and written by the owner of the span (under
// its file's mutex, or by the flush that owns the set).
type spillStore struct {
	f       *os.File
	slots   int64 // slots the limit allows
	minSpan int   // smallest span moved here (spillMinSpan; tests lower it)

	mu struct {
		sync.Mutex
		next int64   // slots ever handed out (the file's extent)
		free []int64 // offsets of freed slots
		used int64   // slots in use
	}
}

// openSpill creates the spill file in dir (made if missing), unlinked,
// with room for limit bytes.
func openSpill(dir string, limit int64) (*spillStore, error) {
	if limit < spillSlotSize {
		return nil, fmt.Errorf("fuse: spill limit of %d bytes is below one slot (%d bytes)", limit, spillSlotSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fuse: cache dir %s: %w", dir, err)
	}
	f, err := openUnlinked(dir)
	if err != nil {
		return nil, fmt.Errorf("fuse: create the spill file in cache dir %s: %w", dir, err)
	}
	return &spillStore{f: f, slots: limit / spillSlotSize, minSpan: spillMinSpan}, nil
}

// openUnlinked opens a new file in dir that has no name: O_TMPFILE, or,
// where the file system lacks it, a file created and removed at once.
func openUnlinked(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(spill)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "cairn-spill-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// close closes the spill file; its space goes back with it.
func (s *spillStore) close() error { return s.f.Close() }

// alloc reserves a slot, or returns errSpillFull.
func (s *spillStore) alloc() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.used >= s.slots {
		return 0, errSpillFull
	}
	s.mu.used++
	if n := len(s.mu.free); n > 0 {
		at := s.mu.free[n-1]
		s.mu.free = s.mu.free[:n-1]
		return at, nil
	}
	at := s.mu.next * spillSlotSize
	s.mu.next++
	return at, nil
}

// release frees the slot at at and gives its disk space back.
func (s *spillStore) release(at int64) {
	// Errors are ignored: a file system without hole punching keeps the
	// space, which the slot's next user overwrites.
	_ = unix.Fallocate(int(s.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, at, spillSlotSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.used--
	s.mu.free = append(s.mu.free, at)
}

// inUse returns the slots in use.
func (s *spillStore) inUse() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.used
}

// put stores data in a new slot. On failure (ENOSPC in the cache
// directory, errSpillFull) nothing is kept and the error is returned.
func (s *spillStore) put(data []byte) (*spillSlot, error) {
	if len(data) > spillSlotSize {
		return nil, fmt.Errorf("fuse: span of %d bytes does not fit a spill slot", len(data))
	}
	at, err := s.alloc()
	if err != nil {
		return nil, err
	}
	if _, err := s.f.WriteAt(data, at); err != nil {
		s.release(at)
		return nil, fmt.Errorf("fuse: write to the spill file: %w", err)
	}
	return &spillSlot{at: at, n: len(data)}, nil
}

// readAt reads len(buf) bytes at off within slot sl.
func (s *spillStore) readAt(sl *spillSlot, off uint64, buf []byte) error {
	if off+uint64(len(buf)) > uint64(sl.n) {
		return fmt.Errorf("fuse: spill read of %d bytes at %d past a slot of %d", len(buf), off, sl.n)
	}
	if _, err := s.f.ReadAt(buf, sl.at+int64(off)); err != nil {
		return fmt.Errorf("fuse: read from the spill file: %w", err)
	}
	return nil
}

// writeAt overwrites bytes at off within slot sl (they lie within it).
func (s *spillStore) writeAt(sl *spillSlot, off uint64, data []byte) error {
	if off+uint64(len(data)) > uint64(sl.n) {
		return fmt.Errorf("fuse: spill write of %d bytes at %d past a slot of %d", len(data), off, sl.n)
	}
	if _, err := s.f.WriteAt(data, sl.at+int64(off)); err != nil {
		return fmt.Errorf("fuse: write to the spill file: %w", err)
	}
	return nil
}

// isNoSpace reports whether err means the cache directory is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeLimits are the buffered bytes past which a writer waits for
// flushes: of one file, of the mount, and of the mount in memory.
type writeLimits struct {
	file, total, mem int64
}

// Defaults of the spill bounds (Config.SpillMemory, Config.SpillLimit).
const (
	defaultSpillMemory = 64 << 20
	defaultSpillLimit  = 4 << 30
)

// limitsFor returns the write limits of a mount: without a spill file the
// memory bounds of before (writerDirtyLimit per file, totalDirtyLimit per
// mount); with one, mem in memory and mem plus the spill file's limit in
// all, for one file as for the mount, so a large sequential write is not
// held to the memory bound.
func limitsFor(spill bool, mem, limit int64) writeLimits {
	if !spill {
		return writeLimits{file: writerDirtyLimit, total: totalDirtyLimit, mem: totalDirtyLimit}
	}
	return writeLimits{file: mem + limit, total: mem + limit, mem: mem}
}
