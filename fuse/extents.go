package fuse

import (
	"cmp"
	"container/heap"
	"slices"
	"sort"

	"github.com/cairn-storage/cairn/filer"
)

// extentMap is a file's committed data as this mount reads it: the visible
// pieces of the filer's slice list, sorted by offset, not overlapping, with
// holes left out. The filer's list is ordered by age (a later slice wins),
// so finding what a read sees means walking all of it, and following a
// commit means pruning all of it again: a database file written at random
// pages holds thousands of slices, and both happened on every read and
// every fsync. Here a read finds its pieces by binary search, and a commit
// of a few slices replaces only the pieces they cover.
type extentMap struct {
	ext []filer.Extent // sorted by Off; no overlaps; Fid never ""; Len > 0
}

// newExtentMap builds the map of a slice list in the filer's order: a
// sweep over the slices' end points with the covering slices in a heap by
// list position, the newest on top. O(n log n).
func newExtentMap(sl []filer.Slice) extentMap {
	type edge struct {
		at    uint64
		i     int
		start bool
	}
	edges := make([]edge, 0, 2*len(sl))
	for i, s := range sl {
		if s.Len > 0 {
			edges = append(edges, edge{s.Off, i, true}, edge{s.Off + s.Len, i, false})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
	var m extentMap
	ended := make([]bool, len(sl))
	var top newestFirst
	for k := 0; k < len(edges); {
		at := edges[k].at
		for ; k < len(edges) && edges[k].at == at; k++ {
			if e := edges[k]; e.start {
				heap.Push(&top, e.i)
			} else {
				ended[e.i] = true
			}
		}
		for len(top) > 0 && ended[top[0]] {
			heap.Pop(&top)
		}
		if len(top) == 0 {
			continue
		}
		// Every slice still open ends at a later edge: [at, next) is
		// not empty and read from the newest slice covering it.
		s, next := sl[top[0]], edges[k].at
		if s.Fid == "" {
			continue
		}
		e := filer.Extent{Off: at, Len: next - at, Fid: s.Fid, NeedleOff: s.NeedleOff + (at - s.Off)}
		if n := len(m.ext); n > 0 && contiguous(m.ext[n-1], e) {
			m.ext[n-1].Len += e.Len
			continue
		}
		m.ext = append(m.ext, e)
	}
	return m
}

// newestFirst is a max-heap of slice list positions.
type newestFirst []int

func (h newestFirst) Len() int           { return len(h) }
func (h newestFirst) Less(i, j int) bool { return h[i] > h[j] }
func (h newestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newestFirst) Push(x any)        { *h = append(*h, x.(int)) }
func (h *newestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// contiguous reports whether b continues a: adjacent in the file and in
// the same needle.
func contiguous(a, b filer.Extent) bool {
	return a.Fid == b.Fid && a.Off+a.Len == b.Off && a.NeedleOff+a.Len == b.NeedleOff
}

// first returns the index of the first piece ending after off.
func (m *extentMap) first(off uint64) int {
	return sort.Search(len(m.ext), func(i int) bool { return m.ext[i].Off+m.ext[i].Len > off })
}

// add puts slice s on top, as a commit of s does on the filer: what it
// covers now reads from s (or is a hole, for a hole slice).
func (m *extentMap) add(s filer.Slice) {
	if s.Len == 0 {
		return
	}
	end := s.Off + s.Len
	i := m.first(s.Off)
	j := i
	for j < len(m.ext) && m.ext[j].Off < end {
		j++
	}
	repl := make([]filer.Extent, 0, 3)
	if i < j && m.ext[i].Off < s.Off {
		left := m.ext[i]
		left.Len = s.Off - left.Off
		repl = append(repl, left)
	}
	if s.Fid != "" {
		repl = append(repl, filer.Extent{Off: s.Off, Len: s.Len, Fid: s.Fid, NeedleOff: s.NeedleOff})
	}
	if i < j {
		if last := m.ext[j-1]; last.Off+last.Len > end {
			right := last
			right.NeedleOff += end - last.Off
			right.Len = last.Off + last.Len - end
			right.Off = end
			repl = append(repl, right)
		}
	}
	m.ext = slices.Replace(m.ext, i, j, repl...)
}

// visible returns the pieces that tile [off, off+length) in file order:
// stored pieces clipped to the range, and holes (Fid "") between them, as
// filer.VisibleExtents does for the slice list.
func (m *extentMap) visible(off, length uint64) []filer.Extent {
	if length == 0 {
		return nil
	}
	end := off + length
	if end < off {
		end = ^uint64(0)
	}
	var out []filer.Extent
	at := off
	for i := m.first(off); i < len(m.ext) && m.ext[i].Off < end; i++ {
		e := m.ext[i]
		if e.Off > at {
			out = append(out, filer.Extent{Off: at, Len: e.Off - at})
		}
		lo, hi := max(e.Off, off), min(e.Off+e.Len, end)
		out = append(out, filer.Extent{Off: lo, Len: hi - lo, Fid: e.Fid, NeedleOff: e.NeedleOff + (lo - e.Off)})
		at = hi
	}
	if at < end {
		out = append(out, filer.Extent{Off: at, Len: end - at})
	}
	return out
}
