package volume

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// Vacuum compacts the volume: it writes the latest record of every key
// (needles and tombstones; corrupt ones as they are, so they still read as
// corrupt) to a new file, fsyncs it, renames it over the volume file and
// fsyncs the directory. A crash at any point leaves either the old or the
// new file, both complete. Writes wait while it runs; reads do not. It
// returns the file size before and after. A failure before the rename
// leaves the volume as it was; a failed directory sync after it turns the
// volume read-only.
func (v *Volume) Vacuum(ctx context.Context) (before, after uint64, err error) {
	r := &request{kind: reqVacuum, ctx: ctx}
	if err := v.submit(ctx, r); err != nil {
		return 0, 0, err
	}
	return r.before, r.after, nil
}

// vacuum runs on the writer goroutine.
func (v *Volume) vacuum(r *request) {
	v.mu.RLock()
	err := func() error {
		if v.mu.fatal != nil {
			return v.writableErrLocked()
		}
		return nil
	}()
	before := v.mu.size
	latest := make([]keyedEntry, 0, len(v.mu.index))
	for k, e := range v.mu.index {
		latest = append(latest, keyedEntry{k, e})
	}
	v.mu.RUnlock()
	if err != nil {
		r.finish(err)
		return
	}
	// Copy in file order: sequential reads.
	slices.SortFunc(latest, func(a, b keyedEntry) int { return cmp.Compare(a.e.off, b.e.off) })

	tmp := v.path(extCompact)
	nf, index, size, err := v.writeCompact(r.ctx, tmp, latest)
	if err == nil {
		err = v.fs.Rename(tmp, v.path(extData))
	}
	if err != nil {
		if nf != nil {
			nf.Close()
		}
		v.fs.Remove(tmp)
		r.finish(fmt.Errorf("volume: vacuum of %s failed, volume unchanged: %w", v.base, err))
		return
	}
	dirErr := v.fs.SyncDir(v.dir)

	v.mu.Lock()
	old := v.mu.file
	v.mu.file = nf
	v.mu.index = index
	v.mu.size = size
	v.mu.garbage, v.mu.damaged = 0, 0
	if dirErr != nil {
		dirErr = fmt.Errorf("volume: vacuum of %s: sync directory %s after rename: %w", v.base, v.dir, dirErr)
		v.setFatalLocked(dirErr)
	}
	v.mu.Unlock()
	old.Close()
	if dirErr != nil {
		r.finish(dirErr)
		return
	}
	v.log.Info("vacuumed volume", "before", before, "after", size)
	r.before, r.after = uint64(before), uint64(size)
	r.finish(nil)
}

type keyedEntry struct {
	key uint64
	e   entry
}

// writeCompact writes and syncs the compacted file name, copying the records
// of entries from the current file. It returns the open new file, its index
// and size.
func (v *Volume) writeCompact(ctx context.Context, name string, entries []keyedEntry) (vfs.File, map[uint64]entry, int64, error) {
	nf, err := v.fs.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, 0, err
	}
	index := make(map[uint64]entry)
	buf := v.sb.encode()
	off := int64(0)
	flush := func() error {
		if _, err := nf.WriteAt(buf, off); err != nil {
			return err
		}
		off += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for _, ke := range entries {
		key, e := ke.key, ke.e
		if err := ctx.Err(); err != nil {
			return nf, nil, 0, err
		}
		rec := make([]byte, e.size())
		if n, err := v.mu.file.ReadAt(rec, e.off); n < len(rec) {
			return nf, nil, 0, fmt.Errorf("volume: read needle %d at %d: %w", key, e.off, err)
		}
		ne := e
		ne.off = off + int64(len(buf))
		index[key] = ne
		buf = append(buf, rec...)
		if len(buf) >= 4<<20 {
			if err := flush(); err != nil {
				return nf, nil, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return nf, nil, 0, err
	}
	if err := nf.Sync(); err != nil {
		return nf, nil, 0, err
	}
	return nf, index, off, nil
}
