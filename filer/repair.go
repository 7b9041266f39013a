package filer

import (
	"context"
	"errors"
	"fmt"
	"syscall"
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
