package fuse

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestPendingTable: what a mount lists as unstored is what the next
// process reads back as lost, for the descriptors opened before it
// started; a second resume keeps the first one's losses; a full table
// makes every file count as lost; an unreadable table is an error.
func TestPendingTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending", "m")
	t1, lost, err := openPending(path, false, 0)
	if err != nil || !lost.empty() {
		t.Fatalf("fresh table: %v, lost %+v", err, lost)
	}
	a, b, c := t1.add(11), t1.add(12), t1.add(13)
	t1.remove(b) // stored
	_ = a
	_ = c
	// The process dies here: its mapping's pages are the file's.

	// A process killed while building its new table leaves that half
	// built file beside the old one: the old one is what counts.
	if err := os.WriteFile(path+".new", []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	const start1 = 1000
	t2, lost, err := openPending(path, true, start1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ino, fh uint64
		want    bool
	}{
		{11, start1 - 1, true}, {13, 1, true}, // open before the kill
		{11, start1, false}, {13, start1 + 5, false}, // opened after
		{12, 1, false}, // stored before the kill
		{14, 1, false}, // never written
		{11, 0, false}, // no handle
	} {
		if got := lost.lostBefore(tc.ino, tc.fh); got != tc.want {
			t.Errorf("after one kill: lostBefore(%d, %d) = %v, want %v", tc.ino, tc.fh, got, tc.want)
		}
	}
	if lost.fresh != 2 {
		t.Errorf("after one kill: %d files newly lost, want 2", lost.fresh)
	}
	t2.add(14) // dirty in the second process, which is killed too
	s := t2.add(15)
	t2.remove(s)

	const start2 = 2000
	_, lost, err = openPending(path, true, start2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ino, fh uint64
		want    bool
	}{
		{11, start1 - 1, true}, {11, start1, false}, // the first kill's cutoff is kept
		{14, start2 - 1, true}, {14, start2, false},
		{15, 1, false}, {12, 1, false},
	} {
		if got := lost.lostBefore(tc.ino, tc.fh); got != tc.want {
			t.Errorf("after two kills: lostBefore(%d, %d) = %v, want %v", tc.ino, tc.fh, got, tc.want)
		}
	}

	if lost.fresh != 1 {
		t.Errorf("after two kills: %d files newly lost, want 1 (the others are carried)", lost.fresh)
	}

	// A full table: the file it had no slot for is not forgotten.
	t3, _, err := openPending(path, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last int
	for i := range pendingSlots + 1 {
		last = t3.add(uint64(100 + i))
	}
	if last != overflowSlot {
		t.Fatalf("slot %d past a full table", last)
	}
	_, lost, err = openPending(path, true, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if !lost.lostBefore(999999, 2999) || lost.lostBefore(999999, 3000) {
		t.Fatal("after an overflow, a file without a slot does not count as lost")
	}
	_, lost, err = openPending(path, true, 4000)
	if err != nil || !lost.lostBefore(999999, 3999) {
		t.Fatalf("an overflow is forgotten by the next resume (%v)", err)
	}

	// An overflow that was stored again leaves nothing behind.
	t4, _, err := openPending(path, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	var slots []int
	for i := range pendingSlots + 2 {
		slots = append(slots, t4.add(uint64(100+i)))
	}
	for _, s := range slots {
		t4.remove(s)
	}
	if err := t4.close(); err != nil {
		t.Fatal(err)
	}
	_, lost, err = openPending(path, true, 5000)
	if err != nil || !lost.empty() {
		t.Fatalf("after every file was stored: %v, lost %+v", err, lost)
	}

	if _, _, err := openPending(filepath.Join(t.TempDir(), "missing"), true, 1); err == nil {
		t.Fatal("resuming without the previous table is no error")
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("cairnpw1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPending(short, true, 1); err == nil {
		t.Fatal("resuming from a truncated table is no error")
	}
}

// TestPendingUnavailable: a record that cannot be kept leaves the mount
// working (a nil table lists nothing) and cannot be resumed from.
func TestPendingUnavailable(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tb := openPendingOrWarn(filepath.Join(notDir, "pending"), slog.New(slog.DiscardHandler))
	if tb != nil {
		t.Fatal("a record under a regular file was opened")
	}
	if s := tb.add(5); s != noSlot {
		t.Fatalf("a missing record gave slot %d", s)
	}
	tb.remove(noSlot)
	if err := tb.close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPending(filepath.Join(notDir, "pending"), true, 1); err == nil {
		t.Fatal("resuming from a record that could not be kept is no error")
	}
}

// FuzzPendingTable: whatever a previous process left in the file (of the
// right size, with the magic), resuming from it never panics, and what it
// reads is carried: a second resume reads the same losses, with the
// cutoffs the first one gave.
func FuzzPendingTable(f *testing.F) {
	f.Add([]byte{}, uint64(1000))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0x80, 11, 0, 0, 0, 0, 0, 0, 0}, uint64(5))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 7}, uint64(1<<62))
	f.Fuzz(func(t *testing.T, body []byte, start uint64) {
		if start == 0 || start > 1<<62 {
			return
		}
		path := filepath.Join(t.TempDir(), "p")
		old := make([]byte, pendingSize)
		copy(old, pendingMagic)
		copy(old[8:], body)
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
		t1, lost1, err := openPending(path, true, start)
		if err != nil {
			t.Fatal(err)
		}
		if err := t1.close(); err != nil {
			t.Fatal(err)
		}
		t2, lost2, err := openPending(path, true, start+1000)
		if err != nil {
			t.Fatal(err)
		}
		defer t2.close()
		if (lost1.all != 0) != (lost2.all != 0) {
			t.Fatalf("overflow not carried: %d then %d", lost1.all, lost2.all)
		}
		if lost2.fresh != 0 {
			t.Fatalf("a resume of a table nobody wrote to since reports %d new losses", lost2.fresh)
		}
		if lost1.all == 0 {
			if len(lost1.cutoff) != len(lost2.cutoff) {
				t.Fatalf("%d losses read, %d carried", len(lost1.cutoff), len(lost2.cutoff))
			}
			for ino, cut := range lost1.cutoff {
				if lost2.cutoff[ino] != cut {
					t.Fatalf("inode %d: cutoff %d read, %d carried", ino, cut, lost2.cutoff[ino])
				}
			}
		}
	})
}

// TestPendingRequestSession: a new table gets a request session id of its
// own; a resume carries the id it reads, and says so; a fresh mount gets
// a new one. A table of the earlier layout (no id) is still read, losses
// and all, and the process gets a fresh id it does not claim to carry.
func TestPendingRequestSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p")
	t1, _, err := openPending(path, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if t1.id == 0 || t1.carried.Load() {
		t.Fatalf("new table: id %x, carried %v", t1.id, t1.carried.Load())
	}
	t1.add(21)
	t2, lost, err := openPending(path, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	if t2.id != t1.id || !t2.carried.Load() || !lost.lostBefore(21, 99) {
		t.Fatalf("resume: id %x (had %x), carried %v, lost %+v", t2.id, t1.id, t2.carried.Load(), lost.cutoff)
	}
	t3, _, err := openPending(path, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if t3.id == t1.id || t3.carried.Load() {
		t.Fatalf("fresh mount kept id %x", t3.id)
	}

	old := make([]byte, pendingSize1)
	copy(old, pendingMagic1)
	binary.LittleEndian.PutUint64(old[pendingHeader1:], 31) // slot 0: inode 31, no cutoff
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	t4, lost, err := openPending(path, true, 500)
	if err != nil {
		t.Fatal(err)
	}
	if t4.id == 0 || t4.carried.Load() || !lost.lostBefore(31, 499) || lost.lostBefore(31, 500) {
		t.Fatalf("resume of an earlier layout: id %x, carried %v, lost %+v", t4.id, t4.carried.Load(), lost.cutoff)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != pendingSize || string(b[:8]) != pendingMagic || binary.LittleEndian.Uint64(b[16:]) != t4.id {
		t.Fatalf("the table is not rewritten in the current layout: %v, %d bytes", err, len(b))
	}
	for _, tb := range []*pendingTable{t1, t2, t3, t4} {
		_ = tb.close()
	}
}

// TestPendingInflight: the requests a process has read and not answered
// are what the next process reads back as unanswered; the new table
// starts with none of its own; a table of the version before lists no
// requests, and says so.
func TestPendingInflight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending", "m")
	t1, _, err := openPending(path, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if t1.knowsUnanswered || len(t1.unanswered) != 0 {
		t.Fatalf("a fresh table reads requests back: %v", t1.unanswered)
	}
	var slots []int
	for range inflightSlots {
		slots = append(slots, t1.claimInflight())
	}
	if s := t1.claimInflight(); s != noSlot {
		t.Fatalf("claim beyond %d slots gave %d", inflightSlots, s)
	}
	t1.setInflight(slots[0], 102) // answered below
	t1.setInflight(slots[1], 104)
	t1.setInflight(slots[7], 110|uniqueResend)
	t1.setInflight(slots[0], 0)
	t1.releaseInflight(slots[2])
	if s := t1.claimInflight(); s != slots[2] {
		t.Fatalf("a released slot is not given again: %d, want %d", s, slots[2])
	}
	// The process dies here, with two requests read and not answered.

	t2, _, err := openPending(path, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !t2.knowsUnanswered || len(t2.unanswered) != 2 || t2.unanswered[0] != 104 || t2.unanswered[1] != 110|uniqueResend {
		t.Fatalf("unanswered after the kill: %v (known %v), want [104 %d]", t2.unanswered, t2.knowsUnanswered, uint64(110|uniqueResend))
	}
	for i := range inflightSlots {
		if u := t2.word(inflightBase + 8*i).Load(); u != 0 {
			t.Fatalf("the new table starts with request %d in slot %d", u, i)
		}
	}
	t2.setInflight(t2.claimInflight(), 200)

	// The layout before: orphans read back, no requests known.
	old := make([]byte, pendingSize2)
	copy(old, pendingMagic2)
	binary.LittleEndian.PutUint64(old[orphanBase:], 41)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	t3, _, err := openPending(path, true, 300)
	if err != nil {
		t.Fatal(err)
	}
	if t3.knowsUnanswered || len(t3.unanswered) != 0 || len(t3.orphans) != 1 {
		t.Fatalf("resume of the layout before: known %v, unanswered %v, orphans %v", t3.knowsUnanswered, t3.unanswered, t3.orphans)
	}
	for _, tb := range []*pendingTable{t1, t2, t3} {
		_ = tb.close()
	}
	var nilTable *pendingTable
	nilTable.setInflight(nilTable.claimInflight(), 1) // no table: records nothing
	nilTable.releaseInflight(noSlot)
}
