package fuse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pendingTable records which files hold writes the mount acknowledged to
// the kernel but has not stored yet, in a small file mapped into memory.
// A process killed with SIGKILL loses its buffered writes, but the pages
// of a shared mapping survive it: the process that resumes the FUSE
// connection (Resume) reads the table its predecessor left and fails
// fsync and close on the descriptors opened before the kill of every file
// listed, instead of letting a later fsync report success for bytes that
// are gone. Recording costs two stores to memory, no system call, so it
// stays out of the write path's way.
//
// Layout (little-endian): an 8-byte magic, an 8-byte overflow word (the
// count of dirty files the table had no slot for, plus bit 63 when an
// earlier process's table overflowed; not 0: every file counts as listed),
// the 8-byte request session id of the FUSE connection (see
// fileSystem.applyReq: it names the filer sessions the mount's namespace
// changes run under, so a request the kernel sends again after a kill
// gets the answer its first run had), then
// pendingSlots slots of 16 bytes: the filer inode (0: free) and the
// handle id below which the inode's descriptors lost writes (0: those of
// the process that wrote the slot, which is every descriptor opened
// before the reader started); then orphanSlots slots of 8 bytes: the
// inodes the mount keeps on the filer's orphan list (unlinked while open,
// or O_TMPFILE) for descriptors still open (see fileSystem.adopted); then
// inflightSlots slots of 8 bytes: the unique ids of the requests the
// process has read from the kernel and not answered yet (0: free; see
// server.loop). A resuming process writes the dirty and orphan slots it
// read back (the dirty ones with their cutoff filled in), so a second
// kill does not forget the first one's losses or orphans; the requests in
// flight it answers itself, before it reads any (Resume). Safe for
// concurrent use.
type pendingTable struct {
	mu   sync.Mutex // guards free and the unmapping of mem; the words of mem are atomics
	mem  []byte     // the mapping; nil once closed
	free []int      // free slot numbers, the next one last

	orphanSlots slotRegion // the inodes kept on the orphan list
	// orphans are the inodes the previous process kept as orphans, with
	// their slots in this table.
	orphans map[uint64]int

	// id is the connection's request session id; carried says it was
	// read from the previous process's table (the connection's
	// requests before the resume ran under it too).
	id      uint64
	carried atomic.Bool

	inflight slotRegion // the requests read and not answered
	// unanswered are the requests the previous process had read and not
	// answered, as its table listed them; knowsUnanswered says its table
	// had that list (earlier versions kept none).
	unanswered      []uint64
	knowsUnanswered bool
}

const (
	pendingMagic  = "cairnpw3"
	pendingHeader = 24
	pendingSlot   = 16
	pendingSlots  = 4096
	orphanSlots   = 1024
	orphanBase    = pendingHeader + pendingSlots*pendingSlot
	inflightSlots = 1024
	inflightBase  = orphanBase + orphanSlots*8
	pendingSize   = inflightBase + inflightSlots*8
	// pendingMagic2 is the table of the version before: no requests in
	// flight. Still read, like pendingMagic1.
	pendingMagic2 = "cairnpw2"
	pendingSize2  = inflightBase
	// pendingMagic1 is the table of an earlier version: no request
	// session id, slots right after the overflow word. Still read, so
	// that an upgrade can resume after a kill of the old version.
	pendingMagic1  = "cairnpw1"
	pendingHeader1 = 16
	pendingSize1   = pendingHeader1 + pendingSlots*pendingSlot
	// carriedOverflow marks an overflow read from a previous process's
	// table; the live count is below it.
	carriedOverflow = 1 << 63
)

// noSlot and overflowSlot are a file's slot number when it is not listed,
// and when it is dirty but the table was full (counted in the header).
const (
	noSlot       = -1
	overflowSlot = -2
)

// lostWrites is what resuming learns from the table: the files whose
// descriptors opened before a cutoff lost acknowledged writes.
type lostWrites struct {
	cutoff map[uint64]uint64 // inode -> handle ids below this lost writes
	all    uint64            // when not 0, every file's handles below it did (the table overflowed)
	fresh  int               // files listed by the process just before, not carried from earlier ones

	mu   sync.Mutex
	told map[uint64]bool // inodes whose loss was logged
}

// tell reports whether the loss of ino's writes is yet to be logged, and
// notes that it is logged now.
func (l *lostWrites) tell(ino uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.told[ino] {
		return false
	}
	if l.told == nil {
		l.told = map[uint64]bool{}
	}
	l.told[ino] = true
	return true
}

// lostBefore reports whether handle fh of inode ino was open when
// acknowledged writes of the file were lost.
func (l *lostWrites) lostBefore(ino, fh uint64) bool {
	if l == nil || fh == 0 {
		return false
	}
	return fh < l.all || fh < l.cutoff[ino]
}

func (l *lostWrites) empty() bool { return l == nil || l.all == 0 && len(l.cutoff) == 0 }

// openPending maps a new table at path. With resume, the table a
// previous process left is read first: its listed files, with start (this
// process's first handle id) as the cutoff of slots that have none, are
// returned and kept in the new table; a table that cannot be read is an
// error (the caller cannot know what was lost). Without resume the table
// starts empty.
func openPending(path string, resume bool, start uint64) (*pendingTable, *lostWrites, error) {
	var lost *lostWrites
	var id uint64
	var orphans, unanswered []uint64
	knowsUnanswered := false
	if resume {
		old, err := os.ReadFile(path)
		header := pendingHeader
		switch {
		case err != nil:
			return nil, nil, fmt.Errorf("fuse: read the record of unstored writes %s left by the previous process: %w", path, err)
		case len(old) == pendingSize && string(old[:8]) == pendingMagic,
			len(old) == pendingSize2 && string(old[:8]) == pendingMagic2:
			id = binary.LittleEndian.Uint64(old[16:])
			for i := range orphanSlots {
				if ino := binary.LittleEndian.Uint64(old[orphanBase+8*i:]); ino != 0 {
					orphans = append(orphans, ino)
				}
			}
			if string(old[:8]) == pendingMagic {
				knowsUnanswered = true
				for i := range inflightSlots {
					if u := binary.LittleEndian.Uint64(old[inflightBase+8*i:]); u != 0 {
						unanswered = append(unanswered, u)
					}
				}
			}
		case len(old) == pendingSize1 && string(old[:8]) == pendingMagic1:
			header = pendingHeader1
		default:
			return nil, nil, fmt.Errorf("fuse: %s is not a record of unstored writes (%d bytes)", path, len(old))
		}
		lost = &lostWrites{cutoff: map[uint64]uint64{}}
		if binary.LittleEndian.Uint64(old[8:]) != 0 {
			lost.all = start
		}
		for i := range pendingSlots {
			s := old[header+i*pendingSlot:]
			ino, cut := binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(s[8:])
			if ino == 0 {
				continue
			}
			if cut == 0 {
				cut = start
				lost.fresh++
			}
			lost.cutoff[ino] = max(lost.cutoff[ino], cut)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("fuse: directory of the record of unstored writes: %w", err)
	}
	// The new table is built in a file of its own and renamed over the
	// old one once complete, so that a kill meanwhile leaves the old one
	// (and what it says was lost) for the next process to read. (No
	// fsync: the table must outlive the process, not the machine, whose
	// crash ends the mount as well.)
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("fuse: create the record of unstored writes: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(pendingSize); err != nil {
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("fuse: size the record of unstored writes %s: %w", tmp, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, pendingSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("fuse: map the record of unstored writes %s: %w", tmp, err)
	}
	t := &pendingTable{mem: mem, id: id, unanswered: unanswered, knowsUnanswered: knowsUnanswered,
		orphanSlots: slotRegion{base: orphanBase}, inflight: slotRegion{base: inflightBase}}
	t.carried.Store(id != 0)
	for t.id == 0 {
		t.id = rand.Uint64()
	}
	copy(mem, pendingMagic)
	t.word(16).Store(t.id)
	n := 0
	if lost != nil {
		if lost.all != 0 {
			// Carried as bit 63: the next reader treats every file as
			// listed, with its own start as the cutoff, which covers
			// this one's.
			t.word(8).Store(carriedOverflow)
		}
		for ino, cut := range lost.cutoff {
			if n == pendingSlots {
				t.word(8).Store(carriedOverflow)
				break
			}
			t.word(pendingHeader + n*pendingSlot + 8).Store(cut)
			t.word(pendingHeader + n*pendingSlot).Store(ino)
			n++
		}
	}
	for i := pendingSlots - 1; i >= n; i-- {
		t.free = append(t.free, i)
	}
	t.orphans = map[uint64]int{}
	for i, ino := range orphans {
		t.word(orphanBase + 8*i).Store(ino)
		t.orphans[ino] = i
	}
	for i := orphanSlots - 1; i >= len(orphans); i-- {
		t.orphanSlots.free = append(t.orphanSlots.free, i)
	}
	for i := inflightSlots - 1; i >= 0; i-- {
		t.inflight.free = append(t.inflight.free, i)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = t.close()
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("fuse: put the record of unstored writes in place: %w", err)
	}
	return t, lost, nil
}

// word is the 8-byte word at byte off of the mapping.
func (t *pendingTable) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&t.mem[off]))
}

// add lists ino as holding unstored writes and returns its slot
// (overflowSlot, counted, when the table is full). A nil table lists
// nothing.
func (t *pendingTable) add(ino uint64) int {
	if t == nil {
		return noSlot
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil {
		return noSlot
	}
	if len(t.free) == 0 {
		t.word(8).Add(1)
		return overflowSlot
	}
	i := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	t.word(pendingHeader + i*pendingSlot).Store(ino)
	return i
}

// remove unlists what add returned.
func (t *pendingTable) remove(slot int) {
	if t == nil || slot == noSlot {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil {
		return
	}
	if slot == overflowSlot {
		t.word(8).Add(^uint64(0))
		return
	}
	t.word(pendingHeader + slot*pendingSlot).Store(0)
	t.free = append(t.free, slot)
}

// slotRegion is a region of 8-byte words of the table, handed out one
// slot at a time: the words are the table's, the free list is this
// process's (guarded by the table's mu).
type slotRegion struct {
	base int   // offset of slot 0
	free []int // free slot numbers, the next one last
}

// take returns a free slot of r holding v (noSlot when none is free, or
// the table is closed). r is one of t's regions.
func (t *pendingTable) take(r *slotRegion, v uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil || len(r.free) == 0 {
		return noSlot
	}
	i := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	t.word(r.base + 8*i).Store(v)
	return i
}

// give clears slot of r and frees it (noSlot: nothing to do). r is one
// of t's regions.
func (t *pendingTable) give(r *slotRegion, slot int) {
	if slot < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil {
		return
	}
	t.word(r.base + 8*slot).Store(0)
	r.free = append(r.free, slot)
}

// addOrphan records that the mount keeps ino on the filer's orphan list
// for descriptors still open, and returns its slot (noSlot when the table
// is full or there is none: a process resuming after this one will not
// free the orphan).
func (t *pendingTable) addOrphan(ino uint64) int {
	if t == nil {
		return noSlot
	}
	return t.take(&t.orphanSlots, ino)
}

// removeOrphan forgets what addOrphan recorded (or a slot of orphans).
func (t *pendingTable) removeOrphan(slot int) {
	if t != nil {
		t.give(&t.orphanSlots, slot)
	}
}

// claimInflight returns a slot for the requests one reader serves, one
// at a time (noSlot when the table is full or there is none: that
// reader's requests are not recorded).
func (t *pendingTable) claimInflight() int {
	if t == nil {
		return noSlot
	}
	return t.take(&t.inflight, 0)
}

// setInflight records in slot the request unique being served, or 0 once
// it is answered.
func (t *pendingTable) setInflight(slot int, unique uint64) {
	if t == nil || slot < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem != nil {
		t.word(t.inflight.base + 8*slot).Store(unique)
	}
}

// releaseInflight gives back what claimInflight returned.
func (t *pendingTable) releaseInflight(slot int) {
	if t != nil {
		t.give(&t.inflight, slot)
	}
}

// close unmaps the table. The file stays: it is rewritten at the next
// mount or resume.
func (t *pendingTable) close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil {
		return nil
	}
	err := unix.Munmap(t.mem)
	t.mem = nil
	return err
}

var errLostByKill = errors.New("writes acknowledged by the previous mount process were lost when it was killed")
