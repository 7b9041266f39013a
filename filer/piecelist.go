package filer

import "slices"

// pieceRun is the most pieces one run of a PieceList holds.
const pieceRun = 512

// PieceList is a file's pieces (the form the filer stores and answers: data
// slices in offset order, never overlapping) for a client that follows its
// own commits, as the mount does after every flush. PlacePiece on one flat
// list moves every piece after the slice's place, so following a 4 KiB
// commit to a database file of 60,000 pieces moved about 1 MiB (9% of the
// mount's CPU time in a random-write benchmark, growing with the file).
// The list is kept in runs of at most pieceRun pieces instead, and placing
// a slice moves pieces within the runs it touches only.
type PieceList struct {
	runs [][]Slice // each non-empty, in offset order; together the pieces
	n    int
}

// NewPieceList returns a list of pieces ps (in the filer's form, see
// Pieces), which it takes over: the caller must not use ps after. The
// zero PieceList is an empty list.
func NewPieceList(ps []Slice) PieceList {
	l := PieceList{n: len(ps)}
	for len(ps) > 0 {
		k := min(len(ps), pieceRun/2)
		l.runs = append(l.runs, slices.Clip(ps[:k]))
		ps = ps[k:]
	}
	return l
}

// Len is the number of pieces.
func (l *PieceList) Len() int { return l.n }

// All returns the pieces as one list.
func (l *PieceList) All() []Slice {
	out := make([]Slice, 0, l.n)
	for _, r := range l.runs {
		out = append(out, r...)
	}
	return out
}

// Place places slice s over the pieces, as PlacePiece does on a flat list.
func (l *PieceList) Place(s Slice) {
	if s.Len == 0 {
		return
	}
	if len(l.runs) == 0 {
		if s.Fid != "" {
			l.runs = [][]Slice{{s}}
			l.n = 1
		}
		return
	}
	lo, hi := s.Off, s.end()
	// Runs a..b hold every piece s touches: a is the first run ending
	// after lo (or the last run), b the last run starting before hi (at
	// least a; s may fall in the gap before run a).
	a := min(l.firstRunEndingAfter(lo), len(l.runs)-1)
	b := a
	for b+1 < len(l.runs) && l.runs[b+1][0].Off < hi {
		b++
	}
	run := l.runs[a]
	if b > a {
		run = slices.Concat(l.runs[a : b+1]...)
	}
	before := len(run)
	run = PlacePiece(run, s)
	l.n += len(run) - before
	var repl [][]Slice
	for len(run) > pieceRun {
		k := pieceRun / 2
		repl = append(repl, slices.Clip(run[:k]))
		run = slices.Clone(run[k:])
	}
	if len(run) > 0 {
		repl = append(repl, run)
	}
	l.runs = slices.Replace(l.runs, a, b+1, repl...)
}

// Extents is PieceExtents over the list: the pieces and holes of the byte
// range [off, off+length), in file order.
func (l *PieceList) Extents(off, length uint64) []Extent {
	if length == 0 {
		return nil
	}
	end := off + length
	if end < off {
		end = ^uint64(0)
	}
	var in []Slice
	for a := l.firstRunEndingAfter(off); a < len(l.runs) && l.runs[a][0].Off < end; a++ {
		r := l.runs[a]
		i := firstEndingAfter(r, off)
		j := i
		for j < len(r) && r[j].Off < end {
			j++
		}
		in = append(in, r[i:j]...)
	}
	return PieceExtents(in, off, length)
}

// firstRunEndingAfter is the index of the first run whose last piece ends
// after off: len(l.runs) if none does.
func (l *PieceList) firstRunEndingAfter(off uint64) int {
	a, _ := slices.BinarySearchFunc(l.runs, off, func(r []Slice, off uint64) int {
		if r[len(r)-1].end() <= off {
			return -1
		}
		return 1
	})
	return a
}
