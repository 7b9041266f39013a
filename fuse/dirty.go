package fuse

import "sort"

// maxSpan bounds the bytes of one span grown by sequential writes.
const maxSpan = maxNeedle

// span is written bytes at a file offset.
type span struct {
	off  uint64
	data []byte
}

func (s span) end() uint64 { return s.off + uint64(len(s.data)) }

// dirtySet holds bytes written to a file but not yet committed: a sorted
// list of disjoint spans (neighbours may touch). A later write overwrites
// the bytes of earlier ones in place. Not safe for concurrent use; the
// owning file's mutex guards it.
type dirtySet struct {
	spans []span
	bytes uint64 // sum of len(data)
}

func (d *dirtySet) empty() bool { return len(d.spans) == 0 }

// end returns the offset just past the last dirty byte (0 if empty).
func (d *dirtySet) end() uint64 {
	if len(d.spans) == 0 {
		return 0
	}
	return d.spans[len(d.spans)-1].end()
}

// write records data at off, copying it.
func (d *dirtySet) write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	end := off + uint64(len(data))
	// First span that ends after off.
	i := sort.Search(len(d.spans), func(i int) bool { return d.spans[i].end() > off })
	// Overwrite the overlapping parts in place and collect the gaps.
	pos := off
	var ins []span
	j := i
	for ; j < len(d.spans) && d.spans[j].off < end; j++ {
		s := d.spans[j]
		if s.off > pos {
			ins = append(ins, span{pos, append([]byte(nil), data[pos-off:s.off-off]...)})
		}
		lo, hi := max(s.off, pos), min(s.end(), end)
		copy(s.data[lo-s.off:hi-s.off], data[lo-off:hi-off])
		pos = hi
	}
	if pos < end {
		ins = append(ins, span{pos, append([]byte(nil), data[pos-off:]...)})
	}
	for _, s := range ins {
		d.bytes += uint64(len(s.data))
	}
	if len(ins) == 0 {
		return
	}
	// Common case: a sequential write extending the span before it. Spans
	// stop growing at maxSpan (a new one starts; neighbours may touch), so
	// a long sequential write is not copied over and over as it grows.
	if len(ins) == 1 && i > 0 && i == j && d.spans[i-1].end() == ins[0].off && len(d.spans[i-1].data)+len(ins[0].data) <= maxSpan {
		d.spans[i-1].data = append(d.spans[i-1].data, ins[0].data...)
		return
	}
	// Insert the gap spans in order among the existing ones.
	merged := make([]span, 0, len(d.spans)+len(ins))
	merged = append(merged, d.spans[:i]...)
	k := 0
	for x := i; x < j; x++ {
		for k < len(ins) && ins[k].off < d.spans[x].off {
			merged = append(merged, ins[k])
			k++
		}
		merged = append(merged, d.spans[x])
	}
	merged = append(merged, ins[k:]...)
	merged = append(merged, d.spans[j:]...)
	d.spans = merged
}

// overlay copies the dirty bytes within [off, off+len(buf)) into buf and
// returns the covered ranges as spans aliasing buf.
func (d *dirtySet) overlay(off uint64, buf []byte) (covered []span) {
	end := off + uint64(len(buf))
	i := sort.Search(len(d.spans), func(i int) bool { return d.spans[i].end() > off })
	for ; i < len(d.spans) && d.spans[i].off < end; i++ {
		s := d.spans[i]
		lo, hi := max(s.off, off), min(s.end(), end)
		copy(buf[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
		covered = append(covered, span{lo, buf[lo-off : hi-off]})
	}
	return covered
}

// truncate drops the dirty bytes at or past size.
func (d *dirtySet) truncate(size uint64) {
	kept := d.spans[:0]
	for _, s := range d.spans {
		switch {
		case s.off >= size:
			d.bytes -= uint64(len(s.data))
		case s.end() > size:
			d.bytes -= s.end() - size
			s.data = s.data[:size-s.off]
			kept = append(kept, s)
		default:
			kept = append(kept, s)
		}
	}
	d.spans = kept
}

// under returns d with newer written over it (newer wins), consuming both.
// It is how a failed flush puts its data back below the writes that
// arrived meanwhile.
func (d *dirtySet) under(newer *dirtySet) *dirtySet {
	for _, s := range newer.spans {
		d.write(s.off, s.data)
	}
	return d
}

// needle is one upload: data and the file ranges it holds.
type needle struct {
	data  []byte
	parts []span // file ranges; data of each aliases the dirty set
	fid   string
}

// pack cuts the dirty spans into needles of at most max bytes, packing
// small spans together.
func (d *dirtySet) pack(maxNeedle int) []*needle {
	var out []*needle
	var cur *needle
	left := d.bytes
	for _, s := range d.spans {
		data := s.data
		off := s.off
		for len(data) > 0 {
			if cur == nil || len(cur.data) == maxNeedle {
				cur = &needle{data: make([]byte, 0, min(uint64(maxNeedle), left))}
				out = append(out, cur)
			}
			n := min(len(data), maxNeedle-len(cur.data))
			cur.parts = append(cur.parts, span{off, data[:n]})
			cur.data = append(cur.data, data[:n]...)
			data = data[n:]
			off += uint64(n)
			left -= uint64(n)
		}
	}
	return out
}
