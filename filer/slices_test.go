package filer

import (
	"cmp"
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
		pieces := visiblePieces(sl)
		for i, p := range pieces {
			if p.Len == 0 || p.Fid == "" || i > 0 && pieces[i-1].end() > p.Off {
				t.Fatalf("iter %d: pieces %+v of %+v are not sorted, disjoint, non-empty data", iter, pieces, sl)
			}
		}
		for b := uint64(0); b < 64; b++ {
			a, k := VisibleExtents(sl, b, 1), VisibleExtents(pieces, b, 1)
			if a[0] != k[0] {
				t.Fatalf("iter %d: pieces change byte %d: %+v vs %+v", iter, b, a, k)
			}
		}
		if got, want := PieceExtents(pieces, off, length), VisibleExtents(sl, off, length); !slices.Equal(got, want) {
			t.Fatalf("iter %d: PieceExtents(%+v, %d, %d) = %+v, want %+v", iter, pieces, off, length, got, want)
		}
	}
}

// piecesByCoverage is the definition visiblePieces must match exactly
// (members must store the same pieces, and a client following a commit
// with AppendSlices must get the filer's list): the pieces of slice i are
// the maximal ranges of it the slices after it do not cover.
func piecesByCoverage(sl []Slice) []Slice {
	var out []Slice
	var cov byterange.Coverage
	for i := len(sl) - 1; i >= 0; i-- {
		s := sl[i]
		if s.Len == 0 {
			continue
		}
		if s.Fid != "" {
			for _, iv := range cov.Uncovered(s.Off, s.end()) {
				out = append(out, Slice{Off: iv.Lo, Len: iv.Hi - iv.Lo, Fid: s.Fid, NeedleOff: s.NeedleOff + iv.Lo - s.Off})
			}
		}
		cov = cov.Add(s.Off, s.end())
	}
	slices.SortFunc(out, func(a, b Slice) int { return cmp.Compare(a.Off, b.Off) })
	return out
}

func TestVisiblePiecesMatchesCoverage(t *testing.T) {
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
			s := Slice{Off: base + rng.Uint64N(span), Len: rng.Uint64N(span/2 + 1)}
			if rng.IntN(6) != 0 {
				s.Fid, s.NeedleOff = fmt.Sprintf("1,%02x00000000", i), rng.Uint64N(9)
			}
			s.Len = min(s.Len, MaxFileSize-s.Off)
			sl = append(sl, s)
		}
		got, want := visiblePieces(sl), piecesByCoverage(sl)
		if !slices.Equal(got, want) {
			t.Fatalf("iter %d: slices %+v\npieces %+v\nwant %+v", iter, sl, got, want)
		}
		// Pieces gives the same for a raw list, and an equal copy for a
		// list already in that form (an answer of the filer).
		if p := Pieces(sl); !slices.Equal(p, want) {
			t.Fatalf("iter %d: Pieces %+v, want %+v", iter, p, want)
		}
		if p := Pieces(want); !slices.Equal(p, want) || len(p) > 0 && &p[0] == &want[0] {
			t.Fatalf("iter %d: Pieces of pieces %+v is not a copy of %+v", iter, p, want)
		}
		// Following one more slice from the pieces gives the pieces of
		// the whole list: a client's AppendSlices agrees with the filer.
		if n > 0 {
			if got, want := AppendSlices(visiblePieces(sl[:n-1]), sl[n-1:]), visiblePieces(sl); !slices.Equal(got, want) {
				t.Fatalf("iter %d: AppendSlices %+v, want %+v", iter, got, want)
			}
			k := rng.IntN(n)
			if got, want := AppendSlices(visiblePieces(sl[:k]), sl[k:]), visiblePieces(sl); !slices.Equal(got, want) {
				t.Fatalf("iter %d: AppendSlices of %d slices %+v, want %+v", iter, n-k, got, want)
			}
			// Any list, not only pieces (a client's list from an earlier
			// version).
			if got, want := AppendSlices(sl[:k], sl[k:]), visiblePieces(sl); !slices.Equal(got, want) {
				t.Fatalf("iter %d: AppendSlices of a raw list %+v, want %+v", iter, got, want)
			}
		}
	}
}

// BenchmarkAppendSlices is a client following one 4 KiB write to a file
// of 16384 pages after 5000 random 4 KiB writes (a database file between
// compactions).
func BenchmarkAppendSlices(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sl []Slice
	for k := range 5000 {
		sl = AppendSlices(sl, []Slice{{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", k)}})
	}
	b.Logf("%d slices", len(sl))
	b.ResetTimer()
	for range b.N {
		AppendSlices(sl, []Slice{{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: "7,100000001"}})
	}
}

// BenchmarkPlacePiece: following a 4 KiB commit on a file with 4,000
// random pages and serving one read, as the mount does after every fsync
// (in place, where AppendSlices copies the list).
func BenchmarkPlacePiece(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []Slice
	for k := range 4000 {
		ps = PlacePiece(ps, Slice{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", k+1)})
	}
	b.ResetTimer()
	for i := range b.N {
		ps = PlacePiece(ps, Slice{Off: rng.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", 5000+i)})
		_ = PieceExtents(ps, rng.Uint64N(16384)*4096, 4096)
	}
}
