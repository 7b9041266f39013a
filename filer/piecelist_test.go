package filer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPieceList places random slices (writes of 1 to 40 pages, some of
// them holes, some spanning many runs) on a PieceList and on one flat list
// with PlacePiece, and checks after each that both hold the same pieces
// and give the same extents for random ranges.
func TestPieceList(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const pages = 32768
	var flat []Slice
	for k := range 200 {
		flat = PlacePiece(flat, Slice{Off: uint64(k) * 3 * 4096, Len: 4096, Fid: fmt.Sprintf("1,%x00000001", k+1)})
	}
	l := NewPieceList(slices.Clone(flat))
	for i := range 20000 {
		n := uint64(1)
		if rng.IntN(40) == 0 {
			n += rng.Uint64N(800) // spans several runs
		}
		s := Slice{Off: rng.Uint64N(pages) * 4096, Len: n * 4096, Fid: fmt.Sprintf("2,%x00000001", i+1), NeedleOff: rng.Uint64N(8) * 512}
		if rng.IntN(50) == 0 {
			s.Fid, s.NeedleOff = "", 0 // a hole: punch or truncate
		}
		flat = PlacePiece(flat, s)
		l.Place(s)
		if l.Len() != len(flat) {
			t.Fatalf("step %d: %d pieces, want %d", i, l.Len(), len(flat))
		}
		if i%97 == 0 || i > 19900 {
			if got := l.All(); !slices.Equal(got, flat) {
				t.Fatalf("step %d: pieces differ from PlacePiece's", i)
			}
		}
		for range 3 {
			off, length := rng.Uint64N(pages*4096+8192), rng.Uint64N(64*4096)
			if got, want := l.Extents(off, length), PieceExtents(flat, off, length); !slices.Equal(got, want) {
				t.Fatalf("step %d: Extents(%d, %d) = %+v, want %+v", i, off, length, got, want)
			}
		}
		for _, r := range l.runs {
			if len(r) == 0 || len(r) > pieceRun {
				t.Fatalf("step %d: a run of %d pieces", i, len(r))
			}
		}
	}
	t.Logf("%d pieces in %d runs", l.Len(), len(l.runs))
	if len(l.runs) < 4 {
		t.Fatalf("%d runs: the test did not exercise splits", len(l.runs))
	}
	var empty PieceList
	empty.Place(Slice{Off: 10, Len: 5})
	if empty.Len() != 0 || empty.Extents(0, 20)[0] != (Extent{Off: 0, Len: 20}) {
		t.Fatalf("a hole on an empty list: %+v", empty.All())
	}
	empty.Place(Slice{Off: 10, Len: 5, Fid: "1,100000001"})
	if got := empty.Extents(0, 20); len(got) != 3 || got[1].Fid != "1,100000001" {
		t.Fatalf("extents %+v", got)
	}
}

// BenchmarkPieceList is BenchmarkPlacePiece on a PieceList: a 256 MiB file
// written as 4 MiB needles, then 30,000 random 4 KiB writes (39,460
// pieces), as in fio's random-write benchmark.
func BenchmarkPieceList(b *testing.B) {
	for _, flatList := range []bool{false, true} {
		b.Run(fmt.Sprintf("flat=%v", flatList), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			var ps []Slice
			for k := range 64 {
				ps = append(ps, Slice{Off: uint64(k) << 22, Len: 1 << 22, Fid: fmt.Sprintf("7,%x00000001", k+1)})
			}
			for k := range 30000 {
				ps = PlacePiece(ps, Slice{Off: rng.Uint64N(65536) * 4096, Len: 4096, Fid: fmt.Sprintf("8,%x00000001", k+1)})
			}
			l := NewPieceList(slices.Clone(ps))
			b.Logf("%d pieces", len(ps))
			b.ResetTimer()
			for i := range b.N {
				s := Slice{Off: rng.Uint64N(65536) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", 70000+i)}
				at := rng.Uint64N(65536) * 4096
				if flatList {
					ps = PlacePiece(ps, s)
					_ = PieceExtents(ps, at, 4096)
				} else {
					l.Place(s)
					_ = l.Extents(at, 4096)
				}
			}
		})
	}
}
