package fuse

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestDirtySetModel checks the dirty set against a flat byte array under
// random writes, truncations and merges, reproducibly from the seed.
func TestDirtySetModel(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		const size = 4096
		model := make([]byte, size)
		valid := make([]bool, size)
		d := &dirtySet{}
		for range 40 {
			off := r.IntN(size - 1)
			n := 1 + r.IntN(min(size-off, 300))
			switch r.IntN(10) {
			case 0:
				d.truncate(uint64(off))
				for i := off; i < size; i++ {
					valid[i] = false
				}
			case 1:
				// A failed flush: the old set goes under newer writes.
				newer := &dirtySet{}
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				newer.write(uint64(off), data)
				d = d.under(newer)
				copy(model[off:], data)
				for i := off; i < off+n; i++ {
					valid[i] = true
				}
			default:
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				d.write(uint64(off), data)
				copy(model[off:], data)
				for i := off; i < off+n; i++ {
					valid[i] = true
				}
			}
			checkDirty(t, seed, d, model, valid)
		}
		for _, n := range d.pack(777) {
			if len(n.data) > 777 {
				t.Fatalf("seed %d: needle of %d bytes", seed, len(n.data))
			}
			pos := 0
			for _, p := range n.parts {
				if !bytes.Equal(n.data[pos:pos+len(p.data)], model[p.off:p.end()]) {
					t.Fatalf("seed %d: packed part at %d differs", seed, p.off)
				}
				pos += len(p.data)
			}
		}
	}
}

func checkDirty(t *testing.T, seed uint64, d *dirtySet, model []byte, valid []bool) {
	t.Helper()
	var total uint64
	prevEnd := uint64(0)
	for i, s := range d.spans {
		if len(s.data) == 0 || (i > 0 && s.off < prevEnd) {
			t.Fatalf("seed %d: spans empty or overlapping: %d at %d after %d", seed, len(s.data), s.off, prevEnd)
		}
		prevEnd = s.end()
		total += uint64(len(s.data))
	}
	if total != d.bytes {
		t.Fatalf("seed %d: bytes %d, spans hold %d", seed, d.bytes, total)
	}
	buf := make([]byte, len(model))
	covered := make([]bool, len(model))
	for _, s := range d.overlay(0, buf) {
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
