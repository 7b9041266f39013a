package fuse

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

// normalize merges extents that continue each other in the same needle,
// and neighbouring holes: two tilings of a range that read the same bytes
// from the same places normalize to the same list.
func normalize(in []filer.Extent) []filer.Extent {
	var out []filer.Extent
	for _, e := range in {
		if n := len(out); n > 0 {
			p := out[n-1]
			if (p.Fid == "" && e.Fid == "" && p.Off+p.Len == e.Off) || (e.Fid != "" && contiguous(p, e)) {
				out[n-1].Len += e.Len
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

func randomSlices(r *rand.Rand, n int) []filer.Slice {
	sl := make([]filer.Slice, n)
	for i := range sl {
		s := filer.Slice{Off: r.Uint64N(200), Len: 1 + r.Uint64N(40)}
		if r.IntN(6) > 0 { // some holes (punched ranges)
			s.Fid = fmt.Sprintf("%d,%x01", 1+r.IntN(3), i)
			s.NeedleOff = r.Uint64N(100)
		}
		sl[i] = s
	}
	return sl
}

func sameExtents(t *testing.T, what string, got, want []filer.Extent) {
	t.Helper()
	g, w := normalize(got), normalize(want)
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("%s:\n got %v\nwant %v", what, g, w)
	}
}

// TestExtentMapMatchesFiler: for random slice lists (overlapping, with
// holes), the map built from the list, and the map followed slice by slice
// as commits arrive, read every range exactly as the filer's own rule
// (filer.VisibleExtents over the list) says.
func TestExtentMapMatchesFiler(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 2000 {
		sl := randomSlices(r, r.IntN(30))
		built := newExtentMap(sl)
		var followed extentMap
		for _, s := range sl {
			followed.add(s)
		}
		for q := range 20 {
			off, n := r.Uint64N(260), r.Uint64N(260)
			want := filer.VisibleExtents(sl, off, n)
			what := fmt.Sprintf("round %d query %d [%d,+%d) of %v", round, q, off, n, sl)
			sameExtents(t, what+" (built)", built.visible(off, n), want)
			sameExtents(t, what+" (followed)", followed.visible(off, n), want)
		}
		for i := 1; i < len(built.ext); i++ {
			if a, b := built.ext[i-1], built.ext[i]; a.Off+a.Len > b.Off {
				t.Fatalf("round %d: pieces overlap or are unsorted: %v", round, built.ext)
			}
		}
	}
}

// BenchmarkFollowCommit: following a 4 KiB commit on a file with 4,000
// random pages, as the mount does after every fsync.
func BenchmarkFollowCommit(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var m extentMap
	for k := range 4000 {
		m.add(filer.Slice{Off: r.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", k+1)})
	}
	b.ResetTimer()
	for i := range b.N {
		m.add(filer.Slice{Off: r.Uint64N(16384) * 4096, Len: 4096, Fid: fmt.Sprintf("7,%x00000001", 5000+i)})
		_ = m.visible(r.Uint64N(16384)*4096, 4096)
	}
}
