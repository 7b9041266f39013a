package raftutil

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestZeroFilledSegment: a segment the log creates reads back every write
// exactly (zeros never land on log data, whatever the order of writes),
// reads zeros elsewhere, and, on a file system that reports preallocated
// but unwritten space as a hole, holds written blocks ahead of the writes.
func TestZeroFilledSegment(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	wf, err := newWALVFS().Create(dir, "seg.wal", size)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	want := make([]byte, size)
	write := func(off int, b []byte) {
		t.Helper()
		if n, err := wf.WriteAt(b, int64(off)); err != nil || n != len(b) {
			t.Fatalf("write %d bytes at %d: %d, %v", len(b), off, n, err)
		}
		copy(want[off:], b)
	}
	write(0, bytes.Repeat([]byte("h"), 64)) // a header
	for i := range 300 {                    // appends through several zero fills
		write(64+i*4000, bytes.Repeat([]byte{byte(i)}, 4000))
	}
	write(5<<20, bytes.Repeat([]byte("far"), 1000))    // past the zeros
	write(64+300*4000, bytes.Repeat([]byte("z"), 100)) // back behind it
	write(0, bytes.Repeat([]byte("H"), 8))             // the header again
	if err := wf.Sync(); err != nil {
		t.Fatal(err)
	}
	// Before anything reads the file: pages read into the cache count as
	// data for SEEK_HOLE even where the blocks are unwritten.
	checkWritten(t, dir, size, int64(64+300*4000))
	got := make([]byte, size)
	if n, err := wf.ReadAt(got, 0); n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("byte %d is %q, want %q", i, got[i], want[i])
			}
		}
	}
}

// checkWritten checks that the blocks of seg.wal in dir up to zeroAhead/2
// past end are written, if the file system tells unwritten space apart.
func checkWritten(t *testing.T, dir string, size, end int64) {
	t.Helper()
	// Does this file system show fallocated, unwritten space as a hole?
	ctl := filepath.Join(dir, "control")
	cf, err := os.Create(ctl)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	if err := unix.Fallocate(int(cf.Fd()), 0, 0, size); err != nil {
		t.Logf("no fallocate here (%v); written blocks not checked", err)
		return
	}
	if hole, err := unix.Seek(int(cf.Fd()), 0, unix.SEEK_HOLE); err != nil || hole != 0 {
		t.Logf("this file system does not report unwritten space as a hole (SEEK_HOLE %d, %v); written blocks not checked", hole, err)
		return
	}
	f, err := os.Open(filepath.Join(dir, "seg.wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hole, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
	if err != nil {
		t.Fatal(err)
	}
	if hole < end+zeroAhead/2 {
		t.Fatalf("the first unwritten block is at %d, within %d bytes of the appends' end %d: the space ahead was not zero-filled", hole, hole-end, end)
	}
}
