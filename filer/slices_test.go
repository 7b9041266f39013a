package filer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestVisibleExtentsRandom compares VisibleExtents with painting the
// slices byte by byte in order.
func TestVisibleExtentsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for iter := range 2000 {
		var sl []Slice
		paint := make([]string, 64)
		for i := range rng.IntN(8) {
			s := Slice{Off: uint64(rng.IntN(60)), Len: uint64(1 + rng.IntN(30))}
			if rng.IntN(4) != 0 {
				s.Fid, s.NeedleOff = fmt.Sprintf("1,%02x00000000", i), uint64(rng.IntN(5))
			}
			sl = append(sl, s)
			for b := s.Off; b < s.end() && b < 64; b++ {
				paint[b] = ""
				if s.Fid != "" {
					paint[b] = fmt.Sprintf("%s@%d", s.Fid, s.NeedleOff+b-s.Off)
				}
			}
		}
		off, length := uint64(rng.IntN(64)), uint64(rng.IntN(64))
		length = min(length, 64-off)
		got := make([]string, 64)
		next := off
		for _, e := range VisibleExtents(sl, off, length) {
			if e.Off != next || e.Len == 0 {
				t.Fatalf("iter %d: extents do not tile [%d,+%d): %+v", iter, off, length, VisibleExtents(sl, off, length))
			}
			next += e.Len
			for b := e.Off; b < e.Off+e.Len; b++ {
				if e.Fid != "" {
					got[b] = fmt.Sprintf("%s@%d", e.Fid, e.NeedleOff+b-e.Off)
				}
			}
		}
		if next != off+length && length > 0 {
			t.Fatalf("iter %d: extents end at %d, want %d", iter, next, off+length)
		}
		for b := off; b < off+length; b++ {
			if got[b] != paint[b] {
				t.Fatalf("iter %d byte %d: %q, want %q (slices %+v)", iter, b, got[b], paint[b], sl)
			}
		}
		kept, dropped := pruneShadowed(sl)
		if len(kept)+len(dropped) != len(sl) {
			t.Fatal("prune lost slices")
		}
		for b := uint64(0); b < 64; b++ {
			a, k := VisibleExtents(sl, b, 1), VisibleExtents(kept, b, 1)
			if a[0] != k[0] {
				t.Fatalf("iter %d: pruning changed byte %d: %+v vs %+v", iter, b, a, k)
			}
		}
	}
}
