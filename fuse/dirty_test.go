package fuse

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestDirtySetModel checks the dirty set against a flat byte array under
// random writes, truncations and merges, reproducibly from the seed.
func TestDirtySetModel(t *testing.T) { testDirtySetModel(t, nil) }

func testDirtySetModel(t *testing.T, st *spillStore) {
	for seed := uint64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		const size = 4096
		model := make([]byte, size)
		valid := make([]bool, size)
		d := newDirtySet(st)
		for range 40 {
			off := r.IntN(size - 1)
			n := 1 + r.IntN(min(size-off, 300))
			switch r.IntN(10) {
			case 2:
				if st != nil {
					_, err := d.spill()
					mustDirty(t, err)
				}
			case 0:
				d.truncate(uint64(off))
				for i := off; i < size; i++ {
					valid[i] = false
				}
			case 1:
				// A failed flush: the old set goes under newer writes.
				newer := newDirtySet(st)
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				mustDirty(t, newer.write(uint64(off), data))
				var err error
				d, err = d.under(newer)
				mustDirty(t, err)
				copy(model[off:], data)
				for i := off; i < off+n; i++ {
					valid[i] = true
				}
			default:
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				mustDirty(t, d.write(uint64(off), data))
				copy(model[off:], data)
				for i := off; i < off+n; i++ {
					valid[i] = true
				}
			}
			checkDirty(t, seed, d, model, valid)
		}
		for _, n := range d.pack(777) {
			data, err := d.needleData(n)
			mustDirty(t, err)
			if len(data) > 777 || len(data) != n.size {
				t.Fatalf("seed %d: needle of %d bytes (size %d)", seed, len(data), n.size)
			}
			pos := 0
			for _, p := range n.parts {
				if !bytes.Equal(data[pos:pos+p.n], model[p.fileOff:p.fileOff+uint64(p.n)]) {
					t.Fatalf("seed %d: packed part at %d differs", seed, p.fileOff)
				}
				pos += p.n
			}
		}
		d.drop()
		if st != nil && st.inUse() != 0 {
			t.Fatalf("seed %d: %d spill slots in use after the set was dropped", seed, st.inUse())
		}
	}
}

func mustDirty(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func checkDirty(t *testing.T, seed uint64, d *dirtySet, model []byte, valid []bool) {
	t.Helper()
	var total uint64
	prevEnd := uint64(0)
	var mem uint64
	for i, s := range d.spans {
		if s.size() == 0 || (i > 0 && s.off < prevEnd) {
			t.Fatalf("seed %d: spans empty or overlapping: %d at %d after %d", seed, s.size(), s.off, prevEnd)
		}
		prevEnd = s.end()
		total += s.size()
		if s.slot == nil {
			mem += uint64(cap(s.data))
		}
	}
	if total != d.bytes || mem != d.mem {
		t.Fatalf("seed %d: bytes %d mem %d, spans hold %d, %d in memory", seed, d.bytes, d.mem, total, mem)
	}
	buf := make([]byte, len(model))
	covered := make([]bool, len(model))
	cov, err := d.overlay(0, buf)
	mustDirty(t, err)
	for _, s := range cov {
		for i := s.off; i < s.end(); i++ {
			covered[i] = true
		}
	}
	for i := range model {
		if covered[i] != valid[i] || (valid[i] && buf[i] != model[i]) {
			t.Fatalf("seed %d: byte %d: covered=%v want %v, %d want %d", seed, i, covered[i], valid[i], buf[i], model[i])
		}
	}
}

// A sequential writer's spans are filled in place up to maxSpan, each
// holding one buffer of maxSpan bytes, and mem counts what they hold.
func TestDirtySetSequentialStream(t *testing.T) {
	d := newDirtySet(nil)
	const w = 1 << 20
	want := randBytes(10*w+4096, 5)
	for off := 0; off < len(want); off += w {
		mustDirty(t, d.write(uint64(off), want[off:min(off+w, len(want))]))
	}
	if len(d.spans) != 3 {
		t.Fatalf("%d spans for %d sequential bytes, want 3 of at most %d", len(d.spans), len(want), maxSpan)
	}
	var mem uint64
	for _, s := range d.spans {
		if len(s.data) > maxSpan || cap(s.data) > maxSpan {
			t.Fatalf("span at %d: %d bytes in a buffer of %d, limit %d", s.off, len(s.data), cap(s.data), maxSpan)
		}
		mem += uint64(cap(s.data))
	}
	if d.bytes != uint64(len(want)) || d.mem != mem {
		t.Fatalf("bytes %d mem %d, want %d and %d", d.bytes, d.mem, len(want), mem)
	}
	got := make([]byte, len(want))
	if _, err := d.overlay(0, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back: %v, equal=%v", err, bytes.Equal(got, want))
	}
	d.truncate(w / 2)
	if d.bytes != w/2 || len(d.spans) != 1 || d.mem != uint64(cap(d.spans[0].data)) {
		t.Fatalf("after truncate: bytes %d mem %d spans %d", d.bytes, d.mem, len(d.spans))
	}
	d.drop()
	if d.bytes != 0 || d.mem != 0 {
		t.Fatalf("after drop: bytes %d mem %d", d.bytes, d.mem)
	}
}

// TestDirtySetTakeHead: the head of a sequential stream is split off
// before its partial last span, bytes and memory counted on each side;
// any other shape is left whole.
func TestDirtySetTakeHead(t *testing.T) {
	d := newDirtySet(nil)
	data := randBytes(2*maxSpan+1000, 61)
	for pos := 0; pos < len(data); pos += 1 << 20 {
		mustDirty(t, d.write(uint64(pos), data[pos:min(pos+1<<20, len(data))]))
	}
	bytes, mem := d.bytes, d.mem
	head := d.takeHead()
	if head == nil || len(head.spans) != 2 || head.bytes != 2*maxSpan || len(d.spans) != 1 || d.bytes != 1000 || d.spans[0].off != 2*maxSpan {
		t.Fatalf("head %+v, tail %d spans of %d bytes", head, len(d.spans), d.bytes)
	}
	if head.bytes+d.bytes != bytes || head.mem+d.mem != mem {
		t.Fatalf("bytes %d+%d mem %d+%d, want %d and %d", head.bytes, d.bytes, head.mem, d.mem, bytes, mem)
	}
	if again := d.takeHead(); again != nil {
		t.Fatal("a single partial span was split")
	}
	e := newDirtySet(nil)
	mustDirty(t, e.write(0, randBytes(maxSpan, 62)))
	mustDirty(t, e.write(maxSpan+4096, randBytes(1000, 63))) // not continuing the full span
	if e.takeHead() != nil {
		t.Fatal("a set whose last span does not continue a full one was split")
	}
}
