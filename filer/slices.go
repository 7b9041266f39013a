package filer

import (
	"cmp"
	"slices"
	"syscall"

	"github.com/cairn-storage/cairn/internal/byterange"
	"github.com/cairn-storage/cairn/internal/fid"
)

// MaxFileSize is the largest file size the filer accepts (EFBIG beyond).
const MaxFileSize uint64 = 1 << 62

// Slice is a piece of a file's data: Len bytes at file offset Off, stored
// in needle Fid starting at NeedleOff. Fid "" is a hole: the range reads as
// zeros. Where slices overlap, the later one in the list wins.
type Slice struct {
	Off       uint64 `json:"off"`
	Len       uint64 `json:"len"`
	Fid       string `json:"fid,omitempty"`
	NeedleOff uint64 `json:"noff,omitempty"`
}

func (s Slice) end() uint64 { return s.Off + s.Len }

// tailFrom is the part of s from offset at on (s.Off < at < s.end()).
func (s Slice) tailFrom(at uint64) Slice {
	return Slice{Off: at, Len: s.end() - at, Fid: s.Fid, NeedleOff: s.NeedleOff + (at - s.Off)}
}

// Extent is a visible piece of a byte range: Len bytes at file offset Off
// are read from needle Fid at NeedleOff, or are zeros when Fid is "".
type Extent struct {
	Off       uint64 `json:"off"`
	Len       uint64 `json:"len"`
	Fid       string `json:"fid,omitempty"`
	NeedleOff uint64 `json:"noff,omitempty"`
}

// VisibleExtents returns, for the byte range [off, off+length), the pieces
// to read in file order: each from the latest slice covering it, or a hole
// (Fid "") where no slice or a hole slice covers it. The extents exactly
// tile the range. The caller clips the range to the file size.
func VisibleExtents(sl []Slice, off, length uint64) []Extent {
	if length == 0 {
		return nil
	}
	end := off + length
	if end < off {
		end = ^uint64(0)
	}
	var cov byterange.Coverage
	var out []Extent
	for i := len(sl) - 1; i >= 0; i-- {
		s := sl[i]
		lo, hi := max(s.Off, off), min(s.end(), end)
		if lo >= hi {
			continue
		}
		for _, iv := range cov.Uncovered(lo, hi) {
			e := Extent{Off: iv.Lo, Len: iv.Hi - iv.Lo}
			if s.Fid != "" {
				e.Fid = s.Fid
				e.NeedleOff = s.NeedleOff + (iv.Lo - s.Off)
			}
			out = append(out, e)
		}
		cov = cov.Add(lo, hi)
	}
	for _, iv := range cov.Uncovered(off, end) {
		out = append(out, Extent{Off: iv.Lo, Len: iv.Hi - iv.Lo})
	}
	slices.SortFunc(out, func(a, b Extent) int { return cmp.Compare(a.Off, b.Off) })
	return mergeHoles(out)
}

// mergeHoles merges neighbouring holes of extents in file order, in place,
// so a range reads as few pieces as possible.
func mergeHoles(out []Extent) []Extent {
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && e.Fid == "" && merged[n-1].Fid == "" && merged[n-1].Off+merged[n-1].Len == e.Off {
			merged[n-1].Len += e.Len
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// PieceExtents is VisibleExtents for a list in the form the filer answers
// (its pieces: in offset order, never overlapping): it finds the pieces
// covering the range by binary search, so a read of a range costs
// O(log n + pieces in it) however many slices the file has. Offsets no
// piece covers are holes.
func PieceExtents(pieces []Slice, off, length uint64) []Extent {
	if length == 0 {
		return nil
	}
	end := off + length
	if end < off {
		end = ^uint64(0)
	}
	i := firstEndingAfter(pieces, off)
	var out []Extent
	at := off
	for ; i < len(pieces) && pieces[i].Off < end; i++ {
		p := pieces[i]
		if p.Off > at {
			out = append(out, Extent{Off: at, Len: p.Off - at})
			at = p.Off
		}
		hi := min(p.end(), end)
		if p.Fid == "" {
			out = append(out, Extent{Off: at, Len: hi - at})
		} else {
			out = append(out, Extent{Off: at, Len: hi - at, Fid: p.Fid, NeedleOff: p.NeedleOff + (at - p.Off)})
		}
		at = hi
	}
	if at < end {
		out = append(out, Extent{Off: at, Len: end - at})
	}
	return mergeHoles(out)
}

// visiblePieces returns what a list of slices (later ones winning where
// they overlap) reads as, in the form the filer stores a file's slices: the
// maximal runs of each slice that are visible, in offset order, never
// overlapping; holes (slices without a needle, and offsets no slice covers)
// are left out. Writing the slices one by one over stored pieces, each
// trimming or removing what it covers (placeSlices), gives the same list.
//
// It sweeps the slices' end points in offset order, keeping the slices that
// cover the current point in a max-heap of list positions: between two
// consecutive end points the top of the heap is the slice a read sees
// there. That is O(n log n). Zero-length slices are never on top.
func visiblePieces(sl []Slice) []Slice {
	edges := make([]edge, 0, 2*len(sl))
	for i, s := range sl {
		if s.Len > 0 {
			edges = append(edges, edge{s.Off, i, true}, edge{s.end(), i, false})
		}
	}
	edges = sortEdges(edges)
	ended := make([]bool, len(sl))
	var out []Slice
	var top posHeap
	last := -1 // the slice the last piece of out comes from
	for k := 0; k < len(edges); {
		at := edges[k].at
		for ; k < len(edges) && edges[k].at == at; k++ {
			if e := edges[k]; e.start {
				top.push(e.i)
			} else {
				ended[e.i] = true
			}
		}
		for len(top) > 0 && ended[top[0]] {
			top.pop()
		}
		// A slice still open ends at a later edge, so [at, edges[k].at)
		// is not empty and top[0] is what a read sees there.
		if len(top) == 0 || sl[top[0]].Fid == "" {
			last = -1
			continue
		}
		i, next := top[0], edges[k].at
		if i == last {
			out[len(out)-1].Len += next - at // on top again after an edge of a slice below it
			continue
		}
		s := sl[i]
		out = append(out, Slice{Off: at, Len: next - at, Fid: s.Fid, NeedleOff: s.NeedleOff + (at - s.Off)})
		last = i
	}
	return out
}

// edge is where slice i of a list starts or ends.
type edge struct {
	at    uint64
	i     int
	start bool
}

// sortEdges sorts edges by offset (the order of equal offsets does not
// matter to the sweep) and returns the sorted slice, which may be a new one.
// Long lists, the ones that cost, are radix-sorted a byte at a time,
// skipping the bytes all offsets share.
func sortEdges(edges []edge) []edge {
	if len(edges) < 256 {
		slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
		return edges
	}
	tmp := make([]edge, len(edges))
	for shift := 0; shift < 64; shift += 8 {
		var count [256]int
		for _, e := range edges {
			count[byte(e.at>>shift)]++
		}
		if count[byte(edges[0].at>>shift)] == len(edges) {
			continue
		}
		pos := 0
		for b, c := range count {
			count[b] = pos
			pos += c
		}
		for _, e := range edges {
			b := byte(e.at >> shift)
			tmp[count[b]] = e
			count[b]++
		}
		edges, tmp = tmp, edges
	}
	return edges
}

// posHeap is a max-heap of slice list positions.
type posHeap []int

func (h *posHeap) push(i int) {
	*h = append(*h, i)
	a := *h
	for c := len(a) - 1; c > 0; {
		p := (c - 1) / 2
		if a[p] >= a[c] {
			break
		}
		a[p], a[c] = a[c], a[p]
		c = p
	}
}

func (h *posHeap) pop() {
	a := *h
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	for p := 0; ; {
		c := 2*p + 1
		if c >= n {
			break
		}
		if c+1 < n && a[c+1] > a[c] {
			c++
		}
		if a[p] >= a[c] {
			break
		}
		a[p], a[c] = a[c], a[p]
		p = c
	}
	*h = a
}

// AppendSlices returns the slice list a CommitSlices (without Truncate)
// of add leaves on a file whose list was old: the filer's own rule, so a
// client that knows old can follow a commit without fetching the list.
// When old is a list the filer answered (its pieces), the result is
// exactly the list the filer now holds, and each slice of add is placed by
// binary search, trimming what it covers, as the filer does. old is not
// modified.
func AppendSlices(old, add []Slice) []Slice {
	if !isPieces(old) {
		all := make([]Slice, 0, len(old)+len(add))
		return visiblePieces(append(append(all, old...), add...))
	}
	out := make([]Slice, len(old), len(old)+2*len(add))
	copy(out, old)
	for _, s := range add {
		out = PlacePiece(out, s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Pieces returns list l (later slices winning where they overlap) in the
// form the filer stores and answers: a copy of l when it already is in
// that form (an answer of the filer), else its visible pieces. The result
// is the caller's to change, with PlacePiece.
func Pieces(l []Slice) []Slice {
	if isPieces(l) {
		return slices.Clone(l)
	}
	return visiblePieces(l)
}

// isPieces reports whether l is in the form the filer stores and answers:
// data slices in offset order, not empty, never overlapping.
func isPieces(l []Slice) bool {
	for i, s := range l {
		if s.Len == 0 || s.Fid == "" || s.end() < s.Off || i > 0 && l[i-1].end() > s.Off {
			return false
		}
	}
	return true
}

// PlacePiece writes s over the pieces ps, as a commit of s does on the
// filer: the pieces it covers are removed, those crossing its ends trimmed
// (one covering all of it split), and s itself, unless a hole, takes their
// place. ps is changed in place (its array may be reused); the result is
// the new list. O(log n + pieces covered), plus moving the tail.
func PlacePiece(ps []Slice, s Slice) []Slice {
	if s.Len == 0 {
		return ps
	}
	lo, hi := s.Off, s.end()
	i := firstEndingAfter(ps, lo)
	j := i
	for j < len(ps) && ps[j].Off < hi {
		j++
	}
	var repl [3]Slice
	n := 0
	if i < j && ps[i].Off < lo {
		repl[n] = ps[i]
		repl[n].Len = lo - ps[i].Off
		n++
	}
	if s.Fid != "" {
		repl[n] = s
		n++
	}
	if i < j && ps[j-1].end() > hi {
		repl[n] = ps[j-1].tailFrom(hi)
		n++
	}
	return slices.Replace(ps, i, j, repl[:n]...)
}

// firstEndingAfter is the index of the first of pieces (in offset order,
// never overlapping) that ends after off: len(pieces) if none does.
func firstEndingAfter(pieces []Slice, off uint64) int {
	i, _ := slices.BinarySearchFunc(pieces, off, func(p Slice, off uint64) int {
		if p.end() <= off {
			return -1
		}
		return 1
	})
	return i
}

// validateSlice checks a slice sent by a client.
func validateSlice(s Slice) syscall.Errno {
	if s.Len == 0 {
		return syscall.EINVAL
	}
	if s.end() < s.Off || s.end() > MaxFileSize {
		return syscall.EFBIG
	}
	if s.Fid != "" {
		if _, err := fid.Parse(s.Fid); err != nil {
			return syscall.EINVAL
		}
	} else if s.NeedleOff != 0 {
		return syscall.EINVAL
	}
	return 0
}
