package filer_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
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
