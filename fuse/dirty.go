package fuse

import (
	"sort"
	"sync"
	"time"
)

// maxSpan bounds the bytes of one span grown by sequential writes.
const maxSpan = maxNeedle

// spanPool keeps the buffers of full-size spans (maxSpan bytes of
// capacity) whose bytes were uploaded and committed, for the spans of the
// writes that follow. A fresh 4 MiB buffer costs a clear of every byte and a
// page fault per page before the first write is copied into it; behind a
// sequential writer that was most of what buffering a write cost besides
// the copy itself.
var spanPool sync.Pool // of *[]byte, each of capacity maxSpan

// newSpanBuf returns a buffer of n bytes and capacity c (n <= c <=
// maxSpan), reused from spanPool when c is maxSpan and one is there. Its
// bytes are not zeroed: the caller overwrites all n of them, and the bytes
// past n are only ever reached by append.
func newSpanBuf(n, c int) []byte {
	if c == maxSpan {
		if p, ok := spanPool.Get().(*[]byte); ok {
			return (*p)[:n]
		}
	}
	return make([]byte, n, c)
}

// span is written bytes at a file offset: in data, or, when spilled, in
// a slot of the mount's spill file (data is nil then).
type span struct {
	off  uint64
	data []byte
	slot *spillSlot
	// pre is the upload of the span's bytes started before a flush took
	// them (see file.preUploadLocked): only ever of a full span, and
	// forgotten (detach) before the span's bytes change.
	pre *preUpload
}

// preUpload is the upload of one full span's bytes, as a needle, started
// while the span is still in the dirty set. It commits nothing: the flush
// that takes the span waits for it and commits its file id with the rest
// of the flush, or uploads the span again if it failed.
type preUpload struct {
	done chan struct{} // closed once the upload returned: fid and err are set
	at   time.Time     // when it started
	fid  string
	err  error
}

// preUploadMaxAge bounds the age of an upload ahead of a flush that the
// flush may still commit: well inside the lease of its file id
// (uploadLease), after which the filer deletes an unreferenced needle.
const preUploadMaxAge = 10 * time.Minute

// usable reports whether a flush may commit the needle of p, which has
// finished: it was stored, and recently enough.
func (p *preUpload) usable() bool {
	return p.err == nil && time.Since(p.at) < preUploadMaxAge
}

// finished reports whether the upload has returned (and so no longer reads
// the span's bytes).
func (p *preUpload) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// detach forgets s's upload ahead of a flush, before its bytes change.
// While that upload may still read the bytes, they are copied to a buffer
// of the span's own first; the upload goes on with the old one, and its
// needle is never referenced (the filer deletes it when its lease ends).
func (s *span) detach() {
	if s.pre == nil {
		return
	}
	if s.slot == nil && !s.pre.finished() {
		b := newSpanBuf(len(s.data), cap(s.data))
		copy(b, s.data)
		s.data = b
	}
	s.pre = nil
}

// size returns the bytes of s.
func (s span) size() uint64 {
	if s.slot != nil {
		return uint64(s.slot.n)
	}
	return uint64(len(s.data))
}

func (s span) end() uint64 { return s.off + s.size() }

// dirtySet holds bytes written to a file but not yet committed: a sorted
// list of disjoint spans (neighbours may touch). A later write overwrites
// the bytes of earlier ones in place. Not safe for concurrent use; the
// owning file's mutex guards it. A set being flushed is not changed, and
// may be read (overlay, needleData) concurrently.
type dirtySet struct {
	spans []span
	bytes uint64      // sum of the spans' sizes
	mem   uint64      // memory the in-memory (not spilled) spans hold: their capacity
	st    *spillStore // where spilled spans are; nil: nothing spills
}

func newDirtySet(st *spillStore) *dirtySet { return &dirtySet{st: st} }

func (d *dirtySet) empty() bool { return len(d.spans) == 0 }

// end returns the offset just past the last dirty byte (0 if empty).
func (d *dirtySet) end() uint64 {
	if len(d.spans) == 0 {
		return 0
	}
	return d.spans[len(d.spans)-1].end()
}

// write records data at off, copying it. An error (only from the spill
// file) leaves the bytes of [off, off+len(data)) undefined.
func (d *dirtySet) write(off uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	end := off + uint64(len(data))
	// First span that ends after off.
	i := sort.Search(len(d.spans), func(i int) bool { return d.spans[i].end() > off })
	if d.appendSeq(i, off, end, data) {
		return nil
	}
	// Overwrite the overlapping parts in place and collect the gaps.
	pos := off
	var ins []span
	j := i
	var werr error
	for ; j < len(d.spans) && d.spans[j].off < end; j++ {
		d.spans[j].detach()
		s := d.spans[j]
		if s.off > pos {
			ins = append(ins, span{off: pos, data: append([]byte(nil), data[pos-off:s.off-off]...)})
		}
		lo, hi := max(s.off, pos), min(s.end(), end)
		if s.slot != nil {
			if err := d.st.writeAt(s.slot, lo-s.off, data[lo-off:hi-off]); err != nil && werr == nil {
				werr = err
			}
		} else {
			copy(s.data[lo-s.off:hi-s.off], data[lo-off:hi-off])
		}
		pos = hi
	}
	if pos < end {
		ins = append(ins, span{off: pos, data: append([]byte(nil), data[pos-off:]...)})
	}
	for _, s := range ins {
		d.bytes += uint64(len(s.data))
		d.mem += uint64(cap(s.data))
	}
	if len(ins) == 0 {
		return werr
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
	return werr
}

// streamWrite is the write size from which a write continuing the span
// before it is taken for a sequential stream: the span is given room for
// maxSpan bytes at once, so the writes that follow are copied once, not
// again each time the span outgrows its buffer.
const streamWrite = 128 << 10

// appendSeq is the common case of write: data continues the in-memory
// span before spans[i] (i from write's search) and overlaps nothing. It
// copies data once into the end of that span, or into a new span after
// it when the span is full, and reports whether it did. Spans stop
// growing at maxSpan, so a long sequential write is not copied over and
// over as it grows; a spilled span does not grow.
func (d *dirtySet) appendSeq(i int, off, end uint64, data []byte) bool {
	if i == 0 || (i < len(d.spans) && d.spans[i].off < end) {
		return false
	}
	prev := &d.spans[i-1]
	if prev.slot != nil || prev.end() != off {
		return false
	}
	n := uint64(len(data))
	if len(prev.data)+len(data) <= maxSpan {
		if need := len(prev.data) + len(data); need > cap(prev.data) {
			// Grow by doubling (a stream: to maxSpan at once); mem
			// counts the capacity, which is what the span holds.
			c := max(need, 2*cap(prev.data))
			if len(data) >= streamWrite {
				c = maxSpan
			}
			c = min(c, maxSpan)
			grown := newSpanBuf(len(prev.data), c)
			copy(grown, prev.data)
			d.mem += uint64(c - cap(prev.data))
			prev.data = grown
		}
		prev.data = append(prev.data, data...)
		d.bytes += n
		return true
	}
	if i < len(d.spans) || len(data) < streamWrite || len(prev.data) < maxSpan {
		return false
	}
	// The previous span is full and the stream goes on past the last span.
	buf := newSpanBuf(len(data), maxSpan)
	copy(buf, data)
	d.spans = append(d.spans, span{off: off, data: buf})
	d.bytes += n
	d.mem += maxSpan
	return true
}

// overlay copies the dirty bytes within [off, off+len(buf)) into buf and
// returns the covered ranges as spans aliasing buf. An error (reading the
// spill file) leaves buf undefined.
func (d *dirtySet) overlay(off uint64, buf []byte) (covered []span, err error) {
	end := off + uint64(len(buf))
	i := sort.Search(len(d.spans), func(i int) bool { return d.spans[i].end() > off })
	for ; i < len(d.spans) && d.spans[i].off < end; i++ {
		s := d.spans[i]
		lo, hi := max(s.off, off), min(s.end(), end)
		if s.slot != nil {
			if err := d.st.readAt(s.slot, lo-s.off, buf[lo-off:hi-off]); err != nil {
				return nil, err
			}
		} else {
			copy(buf[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
		}
		covered = append(covered, span{off: lo, data: buf[lo-off : hi-off]})
	}
	return covered, nil
}

// truncate drops the dirty bytes at or past size.
func (d *dirtySet) truncate(size uint64) {
	kept := d.spans[:0]
	for _, s := range d.spans {
		switch {
		case s.off >= size:
			d.bytes -= s.size()
			if s.slot != nil {
				d.st.release(s.slot)
			} else {
				d.mem -= uint64(cap(s.data))
			}
		case s.end() > size:
			s.detach()
			cut := s.end() - size
			d.bytes -= cut
			if s.slot != nil {
				s.slot.n -= int(cut)
			} else {
				s.data = s.data[:size-s.off] // keeps its capacity, counted in mem
			}
			kept = append(kept, s)
		default:
			kept = append(kept, s)
		}
	}
	d.spans = kept
}

// drop empties d, giving back its spill slots.
func (d *dirtySet) drop() {
	d.truncate(0)
}

// takeHead splits off the spans of d before a trailing partial span that
// continues a full one (the span a sequential writer is filling), for a
// background flush to take while that span stays in d to be filled. It
// returns nil, leaving d as it is, when d does not end that way.
func (d *dirtySet) takeHead() *dirtySet {
	n := len(d.spans)
	if n < 2 {
		return nil
	}
	last, prev := d.spans[n-1], d.spans[n-2]
	if last.slot != nil || len(last.data) >= maxSpan || prev.slot != nil || len(prev.data) != maxSpan || prev.end() != last.off {
		return nil
	}
	head := &dirtySet{spans: d.spans[: n-1 : n-1], st: d.st}
	for _, s := range head.spans {
		head.bytes += s.size()
		if s.slot == nil {
			head.mem += uint64(cap(s.data))
		}
	}
	d.spans = []span{last}
	d.bytes -= head.bytes
	d.mem -= head.mem
	return head
}

// hasPre reports whether any span of d was uploaded ahead of a flush (or
// is being): its needle is to be committed, not its bytes again.
func (d *dirtySet) hasPre() bool {
	for i := range d.spans {
		if d.spans[i].pre != nil {
			return true
		}
	}
	return false
}

// forgetPre forgets every upload ahead of a flush of d's spans, all of
// which have finished (d is a set whose flush failed): the retry uploads
// the spans again rather than commit needles stored before the failure.
func (d *dirtySet) forgetPre() {
	for i := range d.spans {
		d.spans[i].pre = nil
	}
}

// recycle empties d like drop and gives the buffers of its full-size
// in-memory spans to spanPool. Only for a set whose bytes nothing reads
// any more: a flushed set once its needles are stored and committed (the
// uploads have returned, and reads copy buffered bytes under the file's
// mutex, which the caller holds).
func (d *dirtySet) recycle() {
	for _, s := range d.spans {
		if s.slot == nil && cap(s.data) == maxSpan {
			b := s.data[:0]
			spanPool.Put(&b)
		}
	}
	d.drop()
}

// under returns d with newer written over it (newer wins), consuming both.
// It is how a failed flush puts its data back below the writes that
// arrived meanwhile. An error (only from the spill file) means bytes of
// newer could not be read or written: the result is not to be trusted.
func (d *dirtySet) under(newer *dirtySet) (*dirtySet, error) {
	var first error
	for _, s := range newer.spans {
		data := s.data
		if s.slot != nil {
			data = make([]byte, s.slot.n)
			if err := newer.st.readAt(s.slot, 0, data); err != nil && first == nil {
				first = err
			}
		}
		if err := d.write(s.off, data); err != nil && first == nil {
			first = err
		}
	}
	newer.drop()
	return d, first
}

// spill moves the in-memory spans to the spill file and returns the
// bytes moved. It stops at the first failure
// (the spill file full, or the cache directory out of space), which it
// returns; the span that failed stays in memory.
func (d *dirtySet) spill() (uint64, error) {
	if d.st == nil {
		return 0, nil
	}
	var moved uint64
	for i := range d.spans {
		s := &d.spans[i]
		if s.slot != nil {
			continue
		}
		sl, err := d.st.put(s.data)
		if err != nil {
			return moved, err
		}
		d.mem -= uint64(cap(s.data))
		moved += uint64(len(s.data))
		s.slot, s.data = sl, nil
	}
	return moved, nil
}

// needle is one upload: the file ranges it holds, in order, and (while
// being uploaded) their bytes.
type needle struct {
	parts []piece
	size  int // sum of the parts' n
	fid   string
	pre   *preUpload // the upload of its one span started before the flush, if any
}

// piece is one file range of a needle, n bytes at file offset fileOff,
// and where its bytes are: in memory (data, aliasing the dirty set) or at
// offset off in a spill slot.
type piece struct {
	fileOff uint64
	n       int
	data    []byte
	slot    *spillSlot
	off     uint64
}

// pack cuts the dirty spans into needles of at most max bytes, packing
// small spans together. The needles' bytes are gathered by needleData,
// one needle at a time, so a large spilled set is not read into memory
// at once.
func (d *dirtySet) pack(maxNeedle int) []*needle {
	var out []*needle
	var cur *needle
	for _, s := range d.spans {
		size := int(s.size())
		if s.pre != nil {
			// Uploaded ahead, as a needle of its own.
			out = append(out, &needle{parts: []piece{{fileOff: s.off, n: size, data: s.data, slot: s.slot}}, size: size, pre: s.pre})
			cur = nil
			continue
		}
		off := s.off
		pos := 0
		for pos < size {
			if cur == nil || cur.size == maxNeedle {
				cur = &needle{}
				out = append(out, cur)
			}
			n := min(size-pos, maxNeedle-cur.size)
			p := piece{fileOff: off, n: n, slot: s.slot, off: uint64(pos)}
			if s.slot == nil {
				p.data = s.data[pos : pos+n]
			}
			cur.parts = append(cur.parts, p)
			cur.size += n
			pos += n
			off += uint64(n)
		}
	}
	return out
}

// needleData returns the bytes of n, read from memory and the spill file.
// A needle that is one piece of one in-memory span is returned without a
// copy: the result aliases the set, which nobody changes while it is
// flushed, and must only be read.
func (d *dirtySet) needleData(n *needle) ([]byte, error) {
	if len(n.parts) == 1 && n.parts[0].slot == nil {
		return n.parts[0].data, nil
	}
	buf := make([]byte, n.size)
	pos := 0
	for _, p := range n.parts {
		if p.slot == nil {
			copy(buf[pos:], p.data)
		} else if err := d.st.readAt(p.slot, p.off, buf[pos:pos+p.n]); err != nil {
			return nil, err
		}
		pos += p.n
	}
	return buf, nil
}
