package filer

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-storage/cairn/internal/fid"
)

// The slices of regular files live in their own bucket, keyed by inode and
// file offset, as the file's visible pieces: they never overlap, no byte
// of a piece is shadowed, and holes are simply the offsets no piece covers.
// A new slice trims or removes the pieces it covers (found with one cursor
// Seek) and is stored as one piece, so a data commit costs O(log n + what
// it changes) however many slices the file has; the inode record holds no
// slice list and stays a few hundred bytes.
//
// Reference counting stays one reference per stored piece with a needle:
// a piece split in two by a slice written into its middle adds one, a
// trimmed piece keeps its one, a removed piece drops its one. A command
// counts the slices it adds before it removes anything, so a needle in
// both the old and the new pieces never reaches zero in between.

// sliceKey is ino (8 bytes, big endian) followed by the file offset (8
// bytes, big endian): the pieces of one file are contiguous and in offset
// order.
func sliceKey(ino, off uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ino)
	binary.BigEndian.PutUint64(b[8:], off)
	return b[:]
}

// encodePiece is the stored value of piece s: Len and NeedleOff as
// unsigned varints, then the bytes of Fid. Off is in the key.
func encodePiece(s Slice) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(s.Fid))
	b = binary.AppendUvarint(b, s.Len)
	b = binary.AppendUvarint(b, s.NeedleOff)
	return append(b, s.Fid...)
}

// decodePiece decodes a stored piece of the slices bucket.
func decodePiece(k, v []byte) (ino uint64, s Slice, err error) {
	if len(k) != 16 {
		return 0, Slice{}, fmt.Errorf("%w: slice key of %d bytes", ErrCorrupt, len(k))
	}
	ino, s.Off = keyU64(k[:8]), keyU64(k[8:])
	l, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, Slice{}, fmt.Errorf("%w: slice of inode %d at %d truncated", ErrCorrupt, ino, s.Off)
	}
	noff, m := binary.Uvarint(v[n:])
	if m <= 0 {
		return 0, Slice{}, fmt.Errorf("%w: slice of inode %d at %d truncated", ErrCorrupt, ino, s.Off)
	}
	s.Len, s.NeedleOff, s.Fid = l, noff, string(v[n+m:])
	return ino, s, nil
}

// piece decodes a stored piece, panicking with a txError if it is corrupt.
func (t *txn) piece(k, v []byte) Slice {
	_, s, err := decodePiece(k, v)
	t.must(err)
	return s
}

// fileSlices returns the pieces of file ino in offset order.
func (t *txn) fileSlices(ino uint64) []Slice {
	var out []Slice
	prefix := u64key(ino)
	c := t.pieces.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, t.piece(k, v))
	}
	return out
}

// slicesIn returns the pieces of file ino that overlap [off, end), in
// offset order: the one starting before off that reaches into the range
// (pieces do not overlap, so there is at most one), then those starting
// inside it.
func (t *txn) slicesIn(ino, off, end uint64) []Slice {
	if off >= end {
		return nil
	}
	var out []Slice
	c := t.pieces.Cursor()
	if pk, pv := keyBefore(c, sliceKey(ino, off)); pk != nil && keyU64(pk[:8]) == ino {
		if s := t.piece(pk, pv); s.Off < off && s.end() > off {
			out = append(out, s)
		}
	}
	for k, v := c.Seek(sliceKey(ino, off)); k != nil && keyU64(k[:8]) == ino; k, v = c.Next() {
		s := t.piece(k, v)
		if s.Off >= end {
			break
		}
		out = append(out, s)
	}
	return out
}

// keyBefore returns the greatest key of c's bucket below key, and its
// value; nil if there is none.
//
// bbolt's backward moves are not reliable in a transaction that deleted
// keys: a leaf emptied by deletes stays in the tree until the commit
// merges it, Prev returns nil when it steps into one (as if it were at the
// first key), and Last loops forever when every leaf is empty. (The filer
// applies a batch of commands in one transaction, so one command's
// deletes can empty leaves under the next one's search.) So: First, which
// steps over empty leaves forwards, says whether any key below key
// exists; only then Last or Prev, and Prev again over each empty leaf
// until it returns one.
func keyBefore(c *bolt.Cursor, key []byte) (k, v []byte) {
	if first, _ := c.First(); first == nil || bytes.Compare(first, key) >= 0 {
		return nil, nil
	}
	if k, _ := c.Seek(key); k == nil {
		return c.Last() // ends: some leaf holds a key
	}
	for {
		if k, v := c.Prev(); k != nil {
			return k, v
		}
	}
}

// pieceStats returns how many pieces file ino has and whether any of them
// is inline data.
func (t *txn) pieceStats(ino uint64) (n int, inline bool) {
	prefix := u64key(ino)
	c := t.pieces.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		n++
		inline = inline || fid.IsInline(t.piece(k, v).Fid)
	}
	return n, inline
}

func (t *txn) putPiece(ino uint64, s Slice) {
	t.must(t.pieces.Put(sliceKey(ino, s.Off), encodePiece(s)))
}

// clearRange removes [lo, hi) from the pieces of file ino: pieces inside it
// are removed (dropping their references), pieces crossing an end are
// trimmed, and a piece covering all of it is split in two (the second half
// is one more reference to its needle).
func (t *txn) clearRange(ino, lo, hi uint64) {
	for _, p := range t.slicesIn(ino, lo, hi) {
		if p.Off < lo {
			left := p
			left.Len = lo - p.Off
			t.putPiece(ino, left)
			if p.end() > hi {
				right := p.tailFrom(hi)
				t.putPiece(ino, right)
				t.addSlices([]Slice{right})
			}
			continue
		}
		t.must(t.pieces.Delete(sliceKey(ino, p.Off)))
		if p.end() <= hi {
			t.dropSlices([]Slice{p})
			continue
		}
		t.putPiece(ino, p.tailFrom(hi))
	}
}

// placeSlices writes sl over the pieces of file ino in list order, the
// later winning where they overlap. The caller has counted sl's
// references (addSlices) first. A hole slice only clears its range.
func (t *txn) placeSlices(ino uint64, sl []Slice) {
	for _, s := range sl {
		t.clearRange(ino, s.Off, s.end())
		if s.Fid != "" {
			t.putPiece(ino, s)
		}
	}
}

// dropFileSlices removes every piece of file ino and drops its references.
func (t *txn) dropFileSlices(ino uint64) {
	sl := t.fileSlices(ino)
	for _, s := range sl {
		t.must(t.pieces.Delete(sliceKey(ino, s.Off)))
	}
	t.dropSlices(sl)
}

// copyFileSlices gives file dst the pieces of file src (which has none),
// each one more reference to its needle.
func (t *txn) copyFileSlices(src, dst uint64) {
	sl := t.fileSlices(src)
	t.addSlices(sl)
	for _, s := range sl {
		t.putPiece(dst, s)
	}
}

// withSlices returns in with its slice list filled in, for an answer to a
// client (the wire form of an inode carries the whole list).
func (t *txn) withSlices(in *Inode) *Inode {
	if in != nil && in.IsRegular() {
		in.Slices = t.fileSlices(in.Ino)
	}
	return in
}
