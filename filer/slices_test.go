package filer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cairn-storage/cairn/internal/byterange"
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

// pruneShadowedByCoverage is the definition pruneShadowed must match
// exactly (a different answer on the same list would make members of
// different versions disagree): slice i is kept iff the slices after it do
// not cover all of it.
func pruneShadowedByCoverage(sl []Slice) (kept, dropped []Slice) {
	visible := make([]bool, len(sl))
	var cov byterange.Coverage
	for i := len(sl) - 1; i >= 0; i-- {
		s := sl[i]
		visible[i] = !cov.Covers(s.Off, s.end())
		cov = cov.Add(s.Off, s.end())
	}
	for i, s := range sl {
		if visible[i] {
			kept = append(kept, s)
		} else {
			dropped = append(dropped, s)
		}
	}
	return kept, dropped
}

func TestPruneShadowedMatchesCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	for iter := range 5000 {
		n := rng.IntN(40)
		span := uint64(1 + rng.IntN(200))
		if iter%10 == 0 { // long lists (sorted by radix), offsets up to 2^62
			n = 130 + rng.IntN(900)
			span = uint64(1) << (8 + rng.IntN(54))
		}
		base := uint64(0)
		if iter%5 == 0 {
			base = MaxFileSize - span // ends near the largest file size
		}
		var sl []Slice
		for i := range n {
			s := Slice{Off: base + rng.Uint64N(span), Len: rng.Uint64N(span/2 + 1), Fid: fmt.Sprintf("1,%02x00000000", i)}
			s.Len = min(s.Len, MaxFileSize-s.Off)
			sl = append(sl, s)
		}
		k1, d1 := pruneShadowed(sl)
		k2, d2 := pruneShadowedByCoverage(sl)
		if !slices.Equal(k1, k2) || !slices.Equal(d1, d2) {
			t.Fatalf("iter %d: slices %+v\nkept %+v dropped %+v\nwant kept %+v dropped %+v", iter, sl, k1, d1, k2, d2)
		}
	}
}

// BenchmarkPruneShadowed is a file of 16384 pages after 5000 random 4 KiB
// writes (a database file between compactions), plus one more write.
func BenchmarkPruneShadowed(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sl []Slice
	for k := range 5000 {
		sl = AppendSlices(sl, []Slice{{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", k)}})
	}
	b.Logf("%d slices", len(sl))
	b.ResetTimer()
	for range b.N {
		pruneShadowed(append(sl[:len(sl):len(sl)], Slice{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: "7,100000001"}))
	}
}
