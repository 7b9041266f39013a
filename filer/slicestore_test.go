package filer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The pieces bucket is a B+tree whose leaves a transaction can empty
// (bbolt merges them only at commit), and the filer applies a batch of
// commands in one transaction. These tests empty whole leaves and then
// place slices whose search starts next to or past the emptied ones.

// pieceFid is the fid of the i-th test needle.
func pieceFid(i int) string { return fmt.Sprintf("1,%08x%08x", i+1, i+1) }

// writePieces gives file ino n pieces of size bytes each, from offset 0,
// in commands of at most 256 slices, with the fids from number fid0 on
// (a fid dropped once is not taken again), and returns them.
func writePieces(s *testState, ino uint64, n int, size uint64, fid0 int) []Slice {
	s.t.Helper()
	var all []Slice
	for i := 0; i < n; i += 256 {
		var sl []Slice
		for j := i; j < min(n, i+256); j++ {
			sl = append(sl, Slice{Off: uint64(j) * size, Len: size, Fid: pieceFid(fid0 + j)})
		}
		s.ok(&CommitSlices{Ino: ino, Slices: sl})
		all = append(all, sl...)
	}
	return all
}

// within runs fn and fails the test if it has not returned after limit
// (a state update that never ends would otherwise hang the whole run).
func within(t *testing.T, limit time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		// Not Fatal: the test's cleanup would wait for the stuck
		// transaction too.
		panic(fmt.Sprintf("%s: %s has not returned after %v", t.Name(), what, limit))
	}
}

// TestPlaceAfterEveryPieceRemoved: one command removes every piece of
// the only file with data (thousands: many leaves, all emptied), then
// places a slice past where they were. Finding the piece before that
// slice must not loop over the emptied leaves (it did, forever, and
// with it the filer's whole Raft group, which applies the same command).
func TestPlaceAfterEveryPieceRemoved(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
	writePieces(s, f, 3000, 100, 0)
	if _, err := s.GetAttr(f); err != nil { // commits the batch
		t.Fatal(err)
	}
	within(t, time.Minute, "a commit after removing every piece", func() {
		s.ok(&CommitSlices{Ino: f, Slices: []Slice{
			{Off: 0, Len: 300000}, // a hole: removes every piece
			{Off: 400000, Len: 10, Fid: "9,0a0000000a"},
		}})
	})
	in, err := s.GetAttr(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Slice{{Off: 400000, Len: 10, Fid: "9,0a0000000a"}}
	if !slices.Equal(in.Slices, want) {
		t.Fatalf("pieces %v, want %v", in.Slices, want)
	}

	// The compactor's swap does the same: ReplaceSlices clears the whole
	// file, then places the new needles' slices. On a filer whose only
	// data is that file (a fresh cluster's first database, written in
	// small pieces), this hung every member.
	var gin *Inode
	repl := []Slice{{Off: 0, Len: 150000, Fid: "9,0b0000000b"}, {Off: 150000, Len: 150000, Fid: "9,0c0000000c"}}
	within(t, time.Minute, "the compactor's swap of a file holding every piece", func() {
		g := s.ok(&Create{Parent: RootIno, Name: "g", Mode: 0o644}).Inode.Ino
		writePieces(s, g, 3000, 100, 3000)
		s.ok(&CommitSlices{Ino: f, Slices: []Slice{{Off: 0, Len: 400010}}}) // f's piece gone: g holds every piece
		if gin, err = s.GetAttr(g); err != nil {
			t.Error(err)
			return
		}
		s.ok(&ReplaceSlices{Ino: g, ExpectGeneration: gin.Generation, NewSlices: repl})
		gin, err = s.GetAttr(g)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gin.Slices, repl) {
		t.Fatalf("pieces after the swap %v, want %v", gin.Slices, repl)
	}
}

// TestPiecesMatchModelAcrossEmptiedLeaves places, in one batch, slices
// that each cover hundreds of small pieces (emptying leaves) and then
// slices inside and around them, and compares the file's pieces with
// PlacePiece on a flat list. A search that stepped back into an emptied
// leaf missed the piece crossing the new slice's start, which then
// overlapped it.
func TestPiecesMatchModelAcrossEmptiedLeaves(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const n, size = 2000, 64
	for round := range 12 {
		s := newTestState(t)
		f := s.ok(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
		// In even rounds a second file's piece follows f's, so that a
		// search past f's pieces finds a key; in odd rounds there is none.
		if round%2 == 0 {
			g := s.ok(&Create{Parent: RootIno, Name: "g", Mode: 0o644}).Inode.Ino
			s.ok(&CommitSlices{Ino: g, Slices: []Slice{{Off: 0, Len: 10, Fid: "8,0800000008"}}})
		}
		model := writePieces(s, f, n, size, 0)
		if _, err := s.GetAttr(f); err != nil {
			t.Fatal(err)
		}
		fid := n // past the fids of the first pieces: a dropped fid is not reused
		within(t, time.Minute, fmt.Sprintf("round %d", round), func() {
			for range 4 {
				var sl []Slice
				for range 1 + rng.IntN(3) {
					// A big slice over 200 to 600 pieces, then small ones
					// inside it and across its ends.
					lo := uint64(rng.IntN(n*size - 200*size))
					big := Slice{Off: lo, Len: uint64(200+rng.IntN(400)) * size, Fid: pieceFid(fid)}
					fid++
					sl = append(sl, big)
					for range 3 {
						off := big.Off + uint64(rng.IntN(int(big.Len)))
						if rng.IntN(3) == 0 && off > 50 {
							off -= 50 // across the start
						}
						sl = append(sl, Slice{Off: off, Len: uint64(1 + rng.IntN(3*size)), Fid: pieceFid(fid)})
						fid++
					}
				}
				s.ok(&CommitSlices{Ino: f, Slices: sl})
				for _, x := range sl {
					model = PlacePiece(model, x)
				}
			}
		})
		in, err := s.GetAttr(f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(in.Slices, model) {
			for i := range min(len(in.Slices), len(model)) {
				if in.Slices[i] != model[i] {
					t.Fatalf("round %d: piece %d is %+v, want %+v (%d pieces, want %d)", round, i, in.Slices[i], model[i], len(in.Slices), len(model))
				}
			}
			t.Fatalf("round %d: %d pieces, want %d", round, len(in.Slices), len(model))
		}
	}
}

// TestCheckReportFindsOverlap: the check behind fs.check reports
// overlapping pieces, the damage the old piece search left.
func TestCheckReportFindsOverlap(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
	writePieces(s, f, 4, 100, 0)
	r, err := s.CheckReport()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 || r.Inodes != 2 || r.Pieces != 4 || r.Needles != 4 || r.ApplyIndex != 0 {
		t.Fatalf("report of a sound state: %+v", r)
	}
	// Store a piece over the first two, as the search that missed the
	// piece crossing a slice's start did.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSlices).Put(sliceKey(f, 50), encodePiece(Slice{Off: 50, Len: 100, Fid: pieceFid(0)})); err != nil {
			return err
		}
		return tx.Bucket(bucketRefs).Put([]byte(pieceFid(0)), u64key(2))
	}); err != nil {
		t.Fatal(err)
	}
	if r, err = s.CheckReport(); err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) == 0 || !strings.Contains(strings.Join(r.Problems, "\n"), "overlaps a piece before it") {
		t.Fatalf("report of overlapping pieces: %+v", r)
	}
	// Put the state back as it was, for the check when the test ends.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSlices).Delete(sliceKey(f, 50)); err != nil {
			return err
		}
		return tx.Bucket(bucketRefs).Put([]byte(pieceFid(0)), u64key(1))
	}); err != nil {
		t.Fatal(err)
	}
}
