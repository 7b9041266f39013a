package filer

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
)

// Slice compaction. Overwrite-heavy files (database pages) grow many
// slices; every read then has to merge them. The leader's compactor picks
// fragmented files, reads their visible bytes, writes them as fresh needles
// and swaps the slice list with ReplaceSlices, which applies only if the
// file's generation is unchanged since the read, so a concurrent write is
// never lost: the compaction is dropped instead (its needles were leased
// uploads, and are deleted). The old needles lose their references in the
// swap and go to the delete queue.
//
// A file holding inline data (inline.go) is compacted too, so the filer
// keeps only recent small writes: when it is not fragmented, only the
// runs of inline bytes are rewritten as needles and the rest of its
// pieces are kept as they are.

const (
	// compactMinSlices is the slice count below which a file is left alone.
	compactMinSlices = 32
	// compactScan bounds the inodes one pass looks at.
	compactScan = 10000
)

// fragmented reports whether a file of n slices has many more than its
// size needs.
func fragmented(in *Inode, n int, chunk uint64) bool {
	ideal := in.Size/chunk + 1
	return in.IsRegular() && in.Snapshot == 0 && n >= compactMinSlices && uint64(n) > 4*ideal
}

// FragmentedFiles returns up to limit regular files after inode after whose
// slice lists want compaction, scanning at most compactScan inodes, and the
// inode to continue after (0 when the scan reached the end).
func (s *State) FragmentedFiles(after uint64, chunk uint64, limit int) ([]uint64, uint64, error) {
	var out []uint64
	var next uint64
	err := s.view(func(t *txn) error {
		c := t.inodes.Cursor()
		k, v := c.Seek(u64key(after + 1))
		for n := 0; k != nil; k, v = c.Next() {
			if n++; n > compactScan || len(out) >= limit {
				next = keyU64(k) - 1
				return nil
			}
			var in Inode
			if err := decodeInode(v, &in); err != nil {
				return err
			}
			if !in.IsRegular() || in.Snapshot != 0 {
				continue
			}
			if n, inline := t.pieceStats(in.Ino); inline || fragmented(&in, n, chunk) {
				out = append(out, in.Ino)
			}
		}
		return nil
	})
	return out, next, err
}

// compactLoop compacts fragmented files while this member leads.
func (s *Server) compactLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CompactInterval)
	defer t.Stop()
	var cursor uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		inos, next, err := s.fsm.State().FragmentedFiles(cursor, uint64(s.cfg.ChunkSize), 8)
		if err != nil {
			s.log.Warn("looking for fragmented files failed; will retry", "err", err)
			continue
		}
		cursor = next
		for _, ino := range inos {
			if err := s.compact(ctx, ino); err != nil && !errors.Is(err, syscall.EAGAIN) {
				s.log.Warn("compacting a file failed; it keeps its slices and is tried again later", "ino", ino, "err", err)
			}
		}
	}
}

// compact rewrites the visible bytes of file ino into fresh needles and
// swaps them in if the file did not change meanwhile. It returns EAGAIN when
// the file changed (nothing is lost; a later pass tries again).
func (s *Server) compact(ctx context.Context, ino uint64) error {
	in, err := s.fsm.State().GetAttr(ino)
	if err != nil {
		return err
	}
	if op := repairOf(in); op != nil {
		// Left by a filer before the fix of the piece search: compacting
		// would keep whatever bytes the damaged list reads as. Repair
		// first (the later write wins); a later pass compacts.
		if _, err := s.applyOp(ctx, op); err != nil {
			return err
		}
		s.met.piecesRepaired.Inc()
		s.log.Warn("repaired a file whose pieces overlapped or passed its size (stored by an earlier version); the bytes written last are kept",
			"ino", ino, "pieces_before", len(in.Slices), "pieces_after", len(op.NewSlices))
		return nil
	}
	chunk := uint64(s.cfg.ChunkSize)
	if !fragmented(in, len(in.Slices), chunk) && !hasInline(in.Slices) {
		return nil
	}
	if time.Since(time.Unix(0, in.Ctime)) < s.cfg.CompactIdle {
		// Still being written (a database file under load): the next
		// write would make the swap fail, after the whole file had been
		// read and rewritten at the writer's expense. A later pass
		// compacts it once it is quiet.
		return nil
	}
	runs, keep := compactionPlan(in, chunk)
	if len(runs) == 0 {
		return nil
	}
	// Runs are packed into needles of up to chunk bytes, each run a
	// slice at its place in the needle: scattered small runs (inline
	// writes of a database's pages) become a few needles, not one each.
	fresh := keep
	var written []string
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, f := range written {
			_ = s.data.Delete(dctx, f) // an undeleted one is GCed when its lease ends
		}
	}
	var batch []Extent
	var buf []byte
	store := func() error {
		if len(batch) == 0 {
			return nil
		}
		f, err := s.data.Write(ctx, buf, s.cfg.Collection, s.cfg.Replication)
		if err != nil {
			return err
		}
		written = append(written, f)
		pos := uint64(0)
		for _, r := range batch {
			fresh = append(fresh, Slice{Off: r.Off, Len: r.Len, Fid: f, NeedleOff: pos})
			pos += r.Len
		}
		batch, buf = nil, nil
		return nil
	}
	rd := &fileReader{ctx: ctx, data: s.data, in: in}
	for _, run := range runs {
		if uint64(len(buf))+run.Len > chunk {
			if err := store(); err != nil {
				drop()
				return err
			}
		}
		b := make([]byte, run.Len)
		if _, err := rd.ReadAt(b, int64(run.Off)); err != nil && uint64(len(b)) != run.Len {
			drop()
			return fmt.Errorf("read %d bytes at %d: %w", run.Len, run.Off, err)
		}
		buf, batch = append(buf, b...), append(batch, run)
	}
	if err := store(); err != nil {
		drop()
		return err
	}
	if _, err := s.applyOp(ctx, &ReplaceSlices{Ino: ino, ExpectGeneration: in.Generation, NewSlices: fresh}); err != nil {
		drop()
		return err
	}
	s.met.compactions.Inc()
	if keep != nil {
		s.log.Info("moved a file's inline data to needles", "ino", ino, "runs", len(runs), "needles", len(written), "slices_after", len(fresh))
		return nil
	}
	s.log.Info("compacted a fragmented file", "ino", ino, "slices_before", len(in.Slices), "slices_after", len(fresh), "bytes", in.Size)
	return nil
}

// compactionPlan returns the runs of file in to rewrite as needles and the
// pieces to keep as they are. A fragmented file is rewritten whole, unless
// its data is scattered writes into a sparse file (nearly as many runs as
// it has slices: a rewrite would leave it as fragmented as it is, and the
// next pass would rewrite it again). Otherwise only the runs of inline
// data are rewritten. No runs: nothing to do.
func compactionPlan(in *Inode, chunk uint64) (runs []Extent, keep []Slice) {
	exts := PieceExtents(in.Slices, 0, in.Size)
	if fragmented(in, len(in.Slices), chunk) {
		if runs := dataRuns(exts, chunk); 2*len(runs) <= len(in.Slices) {
			return runs, nil
		}
	}
	var inline []Extent
	keep = []Slice{}
	for _, e := range exts {
		switch {
		case fid.IsInline(e.Fid):
			inline = append(inline, e)
		case e.Fid != "":
			keep = append(keep, Slice{Off: e.Off, Len: e.Len, Fid: e.Fid, NeedleOff: e.NeedleOff})
		}
	}
	if len(inline) == 0 {
		return nil, nil
	}
	return dataRuns(inline, chunk), keep
}

// hasInline reports whether any of sl is inline data.
func hasInline(sl []Slice) bool {
	for _, s := range sl {
		if fid.IsInline(s.Fid) {
			return true
		}
	}
	return false
}

// dataRuns merges the extents that hold data (holes stay holes) into runs
// of at most chunk bytes.
func dataRuns(exts []Extent, chunk uint64) []Extent {
	var runs []Extent
	for _, e := range exts {
		if e.Fid == "" {
			continue
		}
		off, left := e.Off, e.Len
		for left > 0 {
			if n := len(runs); n > 0 && runs[n-1].Off+runs[n-1].Len == off && runs[n-1].Len < chunk {
				take := min(left, chunk-runs[n-1].Len)
				runs[n-1].Len += take
				off, left = off+take, left-take
				continue
			}
			take := min(left, chunk)
			runs = append(runs, Extent{Off: off, Len: take})
			off, left = off+take, left-take
		}
	}
	return runs
}
