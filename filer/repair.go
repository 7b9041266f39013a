package filer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cairn-storage/cairn/internal/fid"
)

// Repairing a file's pieces.
//
// A file's pieces must never overlap and must lie within its size. Filers
// before the fix of the piece search (keyBefore) could store a new slice
// without trimming the piece that crossed its start, leaving the two
// overlapping. Of two overlapping pieces the one that starts later is
// always the newer: placing a slice removes every piece that starts
// inside it, so an older piece can only survive where it starts before
// the newer one. RepairedPieces rebuilds the pieces on that rule, which
// keeps exactly the bytes written last, and Client.RepairPieces swaps
// them in with ReplaceSlices, guarded by the file's generation like a
// compaction: the bytes a reader sees change only where the damage hid
// the newer write.

// RepairedPieces returns the sound form of a file's stored pieces ps (in
// offset order, possibly overlapping or reaching past size): each placed
// over those before it in offset order, the later winning where they
// overlap, and cut at size. For sound pieces it returns an equal list.
func RepairedPieces(ps []Slice, size uint64) []Slice {
	var l PieceList
	for _, p := range ps {
		if p.Off >= size || p.Len == 0 || p.Fid == "" {
			continue
		}
		p.Len = min(p.Len, size-p.Off)
		l.Place(p)
	}
	return l.All()
}

// piecesSound reports whether pieces ps of a file of size bytes are in
// offset order, never overlap, and lie within the size.
func piecesSound(ps []Slice, size uint64) bool {
	var end uint64
	for _, p := range ps {
		if p.Off < end || p.Len == 0 || p.Fid == "" || p.end() > size {
			return false
		}
		end = p.end()
	}
	return true
}

// repairOf returns the command that repairs the pieces of regular file in
// (in.Slices filled), guarded by its generation; nil when they are sound.
func repairOf(in *Inode) *ReplaceSlices {
	if piecesSound(in.Slices, in.Size) {
		return nil
	}
	return &ReplaceSlices{Ino: in.Ino, ExpectGeneration: in.Generation, NewSlices: RepairedPieces(in.Slices, in.Size)}
}

// RepairPieces makes the pieces of regular file ino sound again (see
// RepairedPieces), through the leader. It reports whether it changed
// anything: false means the pieces were already sound. A file that
// changes meanwhile is read and repaired again, a few times.
func (c *Client) RepairPieces(ctx context.Context, ino uint64) (changed bool, err error) {
	for range 5 {
		in, err := c.GetAttr(ctx, ino)
		if err != nil {
			return false, fmt.Errorf("filer: repair pieces of inode %d: %w", ino, err)
		}
		if !in.IsRegular() {
			return false, fmt.Errorf("filer: repair pieces of inode %d: not a regular file: %w", ino, syscall.EINVAL)
		}
		op := repairOf(in)
		if op == nil {
			return false, nil
		}
		_, err = c.Apply(ctx, op)
		if errors.Is(err, syscall.EAGAIN) {
			continue // written meanwhile: read it again
		}
		if err != nil {
			return false, fmt.Errorf("filer: repair pieces of inode %d: %w", ino, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("filer: repair pieces of inode %d: the file kept changing; try again when it is idle: %w", ino, syscall.EAGAIN)
}

// Repairing needle reference counts.
//
// Every command moves a needle's count together with the pieces naming it
// (addSlices, dropSlices), so a count that differs from its references
// stays off by the same amount for good: a count too high keeps a needle
// nobody reads from ever being freed (the cascaded damage of overlapping
// pieces leaves one, see docs/filer.md); a count too low would free a
// needle still read from when it reaches zero. A check lists such needles
// with their count and references (CheckReport.RefFixes), and FixRefs sets
// each count to its references, but only while every count is still the
// one the check saw: the count moving means the references moved with it,
// and an unchanged count means the references the check counted are
// still the needle's. So a fix computed from an older check, or applied a
// second time, is refused (EAGAIN) and changes nothing.

// FixRefs sets the reference counts of needles whose count a check found
// to differ from the pieces naming them (fs.check -repair; see
// filer/repair.go). It applies only if every count is still the one the
// check saw (EAGAIN otherwise, changing nothing): a count moves only with
// the references, so an unchanged count means unchanged references.
type FixRefs struct {
	Fixes []RefFix `json:"fixes"`
}

// RefFix is the repair of one needle's reference count.
type RefFix struct {
	Fid string `json:"fid"`
	// Count is the count the check saw (0: none kept).
	Count uint64 `json:"count"`
	// Refs is the number of pieces naming the needle then: its count from
	// now on. At 0 the needle is freed as by the last drop of a reference.
	Refs uint64 `json:"refs"`
}

func (*FixRefs) OpType() string { return "fix_refs" }

// maxRefFixes is the most needles one FixRefs command repairs.
const maxRefFixes = 1000

// fixRefs applies a FixRefs: all of it, or nothing when a count moved
// since the check (EAGAIN) or a needle is queued for deletion (ESTALE: its
// needle may be gone already, no count brings it back).
func (t *txn) fixRefs(op *FixRefs) *Result {
	if len(op.Fixes) == 0 || len(op.Fixes) > maxRefFixes {
		return errnoResult(syscall.EINVAL)
	}
	seen := make(map[string]bool, len(op.Fixes))
	for _, f := range op.Fixes {
		if _, err := fid.Parse(f.Fid); err != nil || f.Count == f.Refs || seen[f.Fid] {
			return errnoResult(syscall.EINVAL)
		}
		seen[f.Fid] = true
	}
	for _, f := range op.Fixes {
		k := []byte(f.Fid)
		var n uint64
		if v := t.refs.Get(k); v != nil {
			n = binary.BigEndian.Uint64(v)
		}
		if n != f.Count {
			return errnoResult(syscall.EAGAIN)
		}
		if t.deleteq.Get(k) != nil {
			return errnoResult(syscall.ESTALE)
		}
	}
	for _, f := range op.Fixes {
		k := []byte(f.Fid)
		if f.Refs > 0 {
			t.must(t.uploads.Delete(k)) // referenced: no longer an upload in flight
			t.must(t.refs.Put(k, u64key(f.Refs)))
			continue
		}
		t.freeNeedle(k) // named by no piece: freed as by the drop of its last reference
	}
	return &Result{}
}

// FixRefs applies fixes (from a check of the leader's state) through the
// leader, maxRefFixes at a time, and returns how many needles it fixed. A
// count that moved since the check stops it with an error wrapping EAGAIN
// (check again and fix what that check lists); the fixes applied before
// stay applied.
func (c *Client) FixRefs(ctx context.Context, fixes []RefFix) (fixed int, err error) {
	for len(fixes) > 0 {
		n := min(len(fixes), maxRefFixes)
		if _, err := c.Apply(ctx, &FixRefs{Fixes: fixes[:n]}); err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				err = fmt.Errorf("%w (a count moved since the check; check again)", err)
			}
			return fixed, fmt.Errorf("filer: fix the reference counts of %d needles: %w", n, err)
		}
		fixed += n
		fixes = fixes[n:]
	}
	return fixed, nil
}
