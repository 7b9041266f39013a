package filer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestRepairedPiecesKeepTheLaterWrite: on random overlapping pieces, the
// repaired list is sound and every byte below the size comes from the
// piece starting last among those covering it, as it did when the newer
// slice was written; sound pieces come back unchanged.
func TestRepairedPiecesKeepTheLaterWrite(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 11))
		size := uint64(1 + r.IntN(2000))
		type owner struct {
			fid string
			off uint64 // offset in the needle
		}
		var ps []filer.Slice
		used := map[uint64]bool{}
		for i := range 1 + r.IntN(40) {
			off := uint64(r.IntN(int(size) + 200))
			if used[off] {
				continue
			}
			used[off] = true
			ps = append(ps, filer.Slice{Off: off, Len: uint64(1 + r.IntN(400)), Fid: fmt.Sprintf("3,%x", 100+i), NeedleOff: uint64(r.IntN(100))})
		}
		slices.SortFunc(ps, func(a, b filer.Slice) int { return int(a.Off) - int(b.Off) })
		want := map[uint64]owner{}
		for _, p := range ps { // in offset order: a later start overwrites
			for b := p.Off; b < p.Off+p.Len && b < size; b++ {
				want[b] = owner{p.Fid, p.NeedleOff + b - p.Off}
			}
		}
		got := filer.RepairedPieces(slices.Clone(ps), size)
		have := map[uint64]owner{}
		var prevEnd uint64
		for i, p := range got {
			if p.Len == 0 || p.Off+p.Len > size || (i > 0 && p.Off < prevEnd) {
				t.Fatalf("seed %d: repaired piece %d %+v is not sound (size %d, previous ends at %d)", seed, i, p, size, prevEnd)
			}
			prevEnd = p.Off + p.Len
			for b := p.Off; b < p.Off+p.Len; b++ {
				have[b] = owner{p.Fid, p.NeedleOff + b - p.Off}
			}
		}
		if len(have) != len(want) {
			t.Fatalf("seed %d: repaired pieces cover %d bytes, want %d", seed, len(have), len(want))
		}
		for b, w := range want {
			if have[b] != w {
				t.Fatalf("seed %d: byte %d comes from %+v, want %+v (pieces %+v, repaired %+v)", seed, b, have[b], w, ps, got)
			}
		}
		if again := filer.RepairedPieces(slices.Clone(got), size); !slices.Equal(again, got) {
			t.Fatalf("seed %d: sound pieces changed by a repair: %+v to %+v", seed, got, again)
		}
	}
}

// TestRepairPiecesOnAServer: a file whose pieces overlap, as the old piece
// search left them, is listed by the check as repairable, and the repair
// through the leader makes the state sound with the later write's bytes
// where the pieces overlapped.
func TestRepairPiecesOnAServer(t *testing.T) {
	n := startNodeCfg(t, filer.Config{}) // the file is not compacted within the test (30 s idle)
	ctx := context.Background()
	ino, fa, fb, want := damagedFile(t, n)
	r, err := n.client.CheckState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "overlaps a piece before it") || !slices.Equal(r.Repairable, []uint64{ino}) {
		t.Fatalf("check of the damaged state: %+v", r)
	}

	changed, err := n.client.RepairPieces(ctx, ino)
	if err != nil || !changed {
		t.Fatalf("repair: changed %v, err %v", changed, err)
	}
	if r, err = n.client.CheckState(ctx); err != nil || r.Err() != nil || len(r.Repairable) != 0 {
		t.Fatalf("check after the repair: %+v, %v", r, err)
	}
	in, err := n.client.GetAttr(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	wantPieces := []filer.Slice{
		{Off: 0, Len: 40, Fid: fa},
		{Off: 40, Len: 20, Fid: fb},
		{Off: 60, Len: 40, Fid: fa, NeedleOff: 60},
	}
	if !slices.Equal(in.Slices, wantPieces) || in.Size != 100 {
		t.Fatalf("pieces after the repair: %+v (size %d), want %+v", in.Slices, in.Size, wantPieces)
	}
	if code, body := n.do(t, http.MethodGet, "/damaged", "", nil); code != http.StatusOK || body != want {
		t.Fatalf("after the repair: GET %d %q, want %q", code, body, want)
	}
	if changed, err := n.client.RepairPieces(ctx, ino); err != nil || changed {
		t.Fatalf("second repair: changed %v, err %v", changed, err)
	}
}

// damagedFile writes file /damaged on n as 100 bytes of "a" then 20 of
// "b" at 40, both inline, and then stores its pieces as the old piece
// search could leave them: the piece of a untrimmed under the piece of b.
// It returns the file, the two inline fids and the bytes the file holds.
func damagedFile(t *testing.T, n *node) (ino uint64, fa, fb, want string) {
	t.Helper()
	ctx := context.Background()
	res, err := n.client.Apply(ctx, &filer.Create{Parent: filer.RootIno, Name: "damaged", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	ino = res.Inode.Ino
	a, b := bytes.Repeat([]byte("a"), 100), bytes.Repeat([]byte("b"), 20)
	ra, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: 0, Data: a}}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: 40, Data: b}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ra.Fids) != 1 || len(rb.Fids) != 1 {
		t.Fatalf("inline commits gave fids %v and %v", ra.Fids, rb.Fids)
	}
	want = string(a[:40]) + string(b) + string(a[60:])
	if code, body := n.do(t, http.MethodGet, "/damaged", "", nil); code != http.StatusOK || body != want {
		t.Fatalf("before the damage: GET %d %q", code, body)
	}
	if changed, err := n.client.RepairPieces(ctx, ino); err != nil || changed {
		t.Fatalf("repair of sound pieces: changed %v, err %v", changed, err)
	}
	if err := filer.OverwritePieces(n.filer, ino, []filer.Slice{
		{Off: 0, Len: 100, Fid: ra.Fids[0]},
		{Off: 40, Len: 20, Fid: rb.Fids[0]},
	}); err != nil {
		t.Fatal(err)
	}
	return ino, ra.Fids[0], rb.Fids[0], want
}

// TestCompactorRepairsDamagedPieces: the compactor, which would otherwise
// copy whatever bytes damaged pieces read as into fresh needles, repairs
// them first, then compacts the sound file.
func TestCompactorRepairsDamagedPieces(t *testing.T) {
	n := startNodeCfg(t, filer.Config{CompactInterval: 200 * time.Millisecond, CompactIdle: time.Millisecond})
	ctx := context.Background()
	ino, _, _, want := damagedFile(t, n)
	testutil.WaitFor(t, 60*time.Second, "the compactor to repair and compact the damaged file", func() error {
		r, err := n.client.CheckState(ctx)
		if err != nil {
			return err
		}
		if err := r.Err(); err != nil {
			return err
		}
		in, err := n.client.GetAttr(ctx, ino)
		if err != nil {
			return err
		}
		for _, p := range in.Slices {
			if fid.IsInline(p.Fid) {
				return fmt.Errorf("not compacted yet: %+v", in.Slices)
			}
		}
		return nil
	})
	if code, body := n.do(t, http.MethodGet, "/damaged", "", nil); code != http.StatusOK || body != want {
		t.Fatalf("after the compactor: GET %d %q, want %q", code, body, want)
	}
	if code, body := n.do(t, http.MethodGet, "/metrics", "", nil); code != http.StatusOK || !strings.Contains(body, "cairn_filer_pieces_repaired_total 1") {
		t.Fatalf("metrics after the repair: %d, want cairn_filer_pieces_repaired_total 1", code)
	}
}

// TestFixRefsOnAServer: needle reference counts made wrong by hand (one too
// low, one too high, and two needles named by no piece, inline and on a
// volume server) are listed by the check with the counts they should
// have; FixRefs sets them, the state is sound, the files read as written
// and the needles named by no piece are freed. A fix computed before a
// count moved, or applied a second time, is refused and changes nothing.
func TestFixRefsOnAServer(t *testing.T) {
	n := startNodeCfg(t, filer.Config{})
	ctx := context.Background()
	create := func(name string) uint64 {
		t.Helper()
		res, err := n.client.Apply(ctx, &filer.Create{Parent: filer.RootIno, Name: name, Mode: 0o644})
		if err != nil {
			t.Fatal(err)
		}
		return res.Inode.Ino
	}
	write := func(ino, off uint64, data string) string {
		t.Helper()
		res, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: off, Data: []byte(data)}}})
		if err != nil || len(res.Fids) != 1 {
			t.Fatalf("inline write: fids %v, err %v", res.Fids, err)
		}
		return res.Fids[0]
	}
	unlink := func(name string) {
		t.Helper()
		if _, err := n.client.Apply(ctx, &filer.Unlink{Parent: filer.RootIno, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	setCount := func(f string, c uint64) {
		t.Helper()
		if err := filer.SetRefCount(n.filer, f, c); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f string) uint64 {
		t.Helper()
		c, err := n.filer.State().RefCount(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := strings.Repeat("a", 100), strings.Repeat("b", 20)
	ia := create("a")
	fa := write(ia, 0, a)
	write(ia, 40, b) // the needle of a is named twice now: before b and after it
	fc := write(create("c"), 0, "ccc")
	fd := write(create("d"), 0, "ddd")
	big := bytes.Repeat([]byte("big!"), 64<<10) // not inline: a needle on the volume server
	if code, body := n.do(t, http.MethodPut, "/big", "", big); code != http.StatusCreated {
		t.Fatalf("PUT /big: %d %s", code, body)
	}
	res, err := n.client.Lookup(ctx, filer.RootIno, "big")
	if err != nil || len(res.Slices) != 1 || fid.IsInline(res.Slices[0].Fid) {
		t.Fatalf("/big: %+v, %v", res, err)
	}
	fbig := res.Slices[0].Fid

	setCount(fa, 1) // too low: when both pieces went, the count would miss
	setCount(fc, 5) // too high: the needle would never be freed
	setCount(fd, 2)
	setCount(fbig, 2)
	unlink("d") // d's and big's needles are left with a count of 1 and no piece
	unlink("big")

	r, err := n.client.CheckState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []filer.RefFix{{Fid: fa, Count: 1, Refs: 2}, {Fid: fc, Count: 5, Refs: 1}, {Fid: fd, Count: 1, Refs: 0}, {Fid: fbig, Count: 1, Refs: 0}}
	byFid := func(x, y filer.RefFix) int { return strings.Compare(x.Fid, y.Fid) }
	slices.SortFunc(want, byFid)
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "count 1, referenced 2 times") || !slices.Equal(r.RefFixes, want) {
		t.Fatalf("check of the miscounted state: %+v, want fixes %+v", r, want)
	}

	// A write splitting a's first piece names its needle once more, and
	// moves its count with it: the fixes computed before are refused whole.
	write(ia, 10, strings.Repeat("e", 10))
	if _, err := n.client.FixRefs(ctx, r.RefFixes); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("stale fixes: %v, want EAGAIN", err)
	}
	if count(fc) != 5 || count(fbig) != 1 {
		t.Fatalf("a refused fix changed counts: c %d, big %d", count(fc), count(fbig))
	}
	if r, err = n.client.CheckState(ctx); err != nil {
		t.Fatal(err)
	}
	want[slices.IndexFunc(want, func(f filer.RefFix) bool { return f.Fid == fa })] = filer.RefFix{Fid: fa, Count: 2, Refs: 3}
	if !slices.Equal(r.RefFixes, want) {
		t.Fatalf("fixes after the write: %+v, want %+v", r.RefFixes, want)
	}
	fixed, err := n.client.FixRefs(ctx, r.RefFixes)
	if err != nil || fixed != len(want) {
		t.Fatalf("FixRefs: %d fixed, %v", fixed, err)
	}
	if r2, err := n.client.CheckState(ctx); err != nil || r2.Err() != nil || len(r2.RefFixes) != 0 {
		t.Fatalf("check after the fix: %+v, %v", r2, err)
	}
	if count(fa) != 3 || count(fc) != 1 || count(fd) != 0 || count(fbig) != 0 {
		t.Fatalf("counts after the fix: a %d, c %d, d %d, big %d", count(fa), count(fc), count(fd), count(fbig))
	}
	if _, err := n.filer.State().ReadInline(fd, 0, 3); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("inline data of the removed d after the fix: %v, want ENOENT", err)
	}
	if _, err := n.client.FixRefs(ctx, r.RefFixes); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("the same fixes again: %v, want EAGAIN", err)
	}
	wantA := a[:10] + strings.Repeat("e", 10) + a[20:40] + b + a[60:]
	if code, body := n.do(t, http.MethodGet, "/a", "", nil); code != http.StatusOK || body != wantA {
		t.Fatalf("GET /a: %d %q, want %q", code, body, wantA)
	}
	if code, body := n.do(t, http.MethodGet, "/c", "", nil); code != http.StatusOK || body != "ccc" {
		t.Fatalf("GET /c: %d %q", code, body)
	}
	// big's needle went to the delete queue; the garbage collector deletes
	// it from the volume server and takes it off the queue.
	testutil.WaitFor(t, 60*time.Second, "the freed needle deleted from the volume server", func() error {
		q, err := n.filer.State().PendingDeletes(0)
		if err != nil {
			return err
		}
		if slices.Contains(q, fbig) {
			return fmt.Errorf("%s still queued for deletion", fbig)
		}
		return nil
	})
	// With its count right, every piece of a can go: the last one frees
	// the needle (with the count left too low, the state would have been
	// found corrupt at the drop of the second piece).
	unlink("a")
	if r, err := n.client.CheckState(ctx); err != nil || r.Err() != nil || count(fa) != 0 {
		t.Fatalf("check after removing a: %+v, %v (count %d)", r, err, count(fa))
	}

	for _, bad := range []*filer.FixRefs{
		{},
		{Fixes: []filer.RefFix{{Fid: fc, Count: 1, Refs: 1}}},
		{Fixes: []filer.RefFix{{Fid: "not a fid", Count: 1, Refs: 0}}},
		{Fixes: []filer.RefFix{{Fid: fc, Count: 1, Refs: 2}, {Fid: fc, Count: 1, Refs: 2}}},
	} {
		if _, err := n.client.Apply(ctx, bad); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("FixRefs %+v: %v, want EINVAL", bad, err)
		}
	}
	if count(fc) != 1 {
		t.Fatalf("bad fixes changed a count: c %d", count(fc))
	}
}

// TestRepairCascadedDamage: writes into a file whose pieces overlap can
// leave, besides the overlap, a needle counted once more than the pieces
// naming it (docs/filer.md). The repairs fs.check -repair runs, the
// pieces first and then the counts, leave a sound state.
func TestRepairCascadedDamage(t *testing.T) {
	n := startNodeCfg(t, filer.Config{})
	ctx := context.Background()
	ino, _, _, _ := damagedFile(t, n)
	for _, w := range []struct {
		off  uint64
		data string
	}{{70, "xxxxxxxxxx"}, {30, "yyyyyyyyyy"}} {
		if _, err := n.client.Apply(ctx, &filer.CommitSlices{Ino: ino, Inline: []filer.InlineData{{Off: w.off, Data: []byte(w.data)}}}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := n.client.CheckState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("check of the damaged file after two writes: %v; repairable %v, fixes %+v", r.Err(), r.Repairable, r.RefFixes)
	if len(r.RefFixes) == 0 {
		t.Fatalf("no reference count to fix: %+v", r)
	}
	for _, ino := range r.Repairable {
		if _, err := n.client.RepairPieces(ctx, ino); err != nil {
			t.Fatal(err)
		}
	}
	if r, err = n.client.CheckState(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client.FixRefs(ctx, r.RefFixes); err != nil {
		t.Fatal(err)
	}
	if r, err = n.client.CheckState(ctx); err != nil || r.Err() != nil {
		t.Fatalf("check after both repairs: %v, %v", r.Err(), err)
	}
}
