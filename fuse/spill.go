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

// Slots of the spill file come in sizes of powers of two, from
// spillSlotMin (one file system block) to spillSlotMax (a span's largest
// size); a span takes the smallest that holds it. Small spans (scattered
// small writes, many small files) spill too, so the memory bound holds
// for them as for large ones, without a few KiB taking a whole 4 MiB
// slot; bytes a slot does not use are never written, so they take no
// disk space either.
const (
	spillSlotMin = 4 << 10
	spillSlotMax = maxSpan
)

// errSpillFull is returned when the slots in use would pass the spill
// file's limit.
var errSpillFull = errors.New("fuse: the spill file is at its size limit")

// spillSlot is where a spilled span's bytes are: n bytes at at, in a slot
// of size bytes.
type spillSlot struct {
	at   int64
	size int64
	n    int
}

// slotSize returns the size of the slot that holds n bytes.
func slotSize(n int) int64 {
	s := int64(spillSlotMin)
	for s < int64(n) {
		s <<= 1
	}
	return s
}

// spillStore is a mount's spill file: slots of the sizes above, whose
// sizes add up to at most limit bytes. A freed slot's space is given back
// to the file system (hole punched) and the slot reused by the next span
// of its size. Slots are carved from the end of the file at offsets that
// are multiples of spillSlotMin, so every hole punched is whole blocks.
//
// Safe for concurrent use: the allocator has its own mutex (a leaf in the
// lock order), and pread/pwrite of distinct slots do not conflict. The
// bytes of one slot are read and written by the owner of the span (under
// its file's mutex, or by the flush that owns the set).
type spillStore struct {
	f     *os.File
	limit int64 // bytes of slots in use at most

	mu struct {
		sync.Mutex
		next  int64             // the file's extent: bytes of slots ever carved
		free  map[int64][]int64 // offsets of freed slots, by slot size
		used  int64             // bytes of the slots in use
		slots int               // slots in use
	}
}

// openSpill creates the spill file in dir (made if missing), unlinked,
// with room for limit bytes.
func openSpill(dir string, limit int64) (*spillStore, error) {
	if limit < spillSlotMax {
		return nil, fmt.Errorf("fuse: spill limit of %d bytes is below one slot (%d bytes)", limit, spillSlotMax)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fuse: cache dir %s: %w", dir, err)
	}
	f, err := openUnlinked(dir)
	if err != nil {
		return nil, fmt.Errorf("fuse: create the spill file in cache dir %s: %w", dir, err)
	}
	st := &spillStore{f: f, limit: limit}
	st.mu.free = make(map[int64][]int64)
	return st, nil
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

// alloc reserves a slot of size bytes, or returns errSpillFull.
func (s *spillStore) alloc(size int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.used+size > s.limit {
		return 0, errSpillFull
	}
	s.mu.used += size
	s.mu.slots++
	if free := s.mu.free[size]; len(free) > 0 {
		at := free[len(free)-1]
		s.mu.free[size] = free[:len(free)-1]
		return at, nil
	}
	at := s.mu.next
	s.mu.next += size
	return at, nil
}

// release frees slot sl and gives its disk space back.
func (s *spillStore) release(sl *spillSlot) {
	// Errors are ignored: a file system without hole punching keeps the
	// space, which the slot's next user overwrites.
	_ = unix.Fallocate(int(s.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sl.at, sl.size)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.used -= sl.size
	s.mu.slots--
	s.mu.free[sl.size] = append(s.mu.free[sl.size], sl.at)
}

// inUse returns the slots in use.
func (s *spillStore) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.slots
}

// put stores data in a new slot. On failure (ENOSPC in the cache
// directory, errSpillFull) nothing is kept and the error is returned.
func (s *spillStore) put(data []byte) (*spillSlot, error) {
	if len(data) > spillSlotMax {
		return nil, fmt.Errorf("fuse: span of %d bytes does not fit a spill slot", len(data))
	}
	size := slotSize(len(data))
	at, err := s.alloc(size)
	if err != nil {
		return nil, err
	}
	sl := &spillSlot{at: at, size: size, n: len(data)}
	if _, err := s.f.WriteAt(data, at); err != nil {
		s.release(sl)
		return nil, fmt.Errorf("fuse: write to the spill file: %w", err)
	}
	return sl, nil
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
