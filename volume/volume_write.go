package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// Limits of one group-commit batch, and of how far the writer may run
// ahead of the syncer: it appends a batch only while fewer than
// maxUnsyncedBatches batches and maxUnsyncedBytes bytes wait for their
// fdatasync. A failed fdatasync fails all of them, so the bound is also the
// most work one disk error can refuse.
const (
	maxBatchWrites     = 256
	maxBatchBytes      = 16 << 20
	maxUnsyncedBatches = 8
	maxUnsyncedBytes   = 32 << 20
	// holdBytes: a batch of fewer bytes is not appended while a sync
	// runs; it keeps collecting requests until the sync returns (or it
	// grows to holdBytes) and goes to the next sync whole, as without the
	// pipeline. Writing it early would gain little (its write is short)
	// and cost a sync of its own.
	holdBytes = 1 << 20
)

type reqKind int

const (
	reqWrite  reqKind = iota // rec is a full record
	reqDelete                // key, cookie
	reqVacuum
)

// request is a unit of work for the writer goroutine. The writer sets the
// results and closes done.
type request struct {
	kind     reqKind
	rec      []byte // reqWrite: the record; its AppendNs is assigned if assignNs
	assignNs bool
	key      uint64
	cookie   uint32
	ctx      context.Context // reqVacuum

	done          chan struct{}
	err           error
	appendNs      uint64 // the AppendNs written
	before, after uint64 // reqVacuum
}

func (r *request) finish(err error) {
	r.err = err
	close(r.done)
}

// submit hands r to the writer and waits for its result. ctx is honoured only
// until the writer has taken r.
func (v *Volume) submit(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("volume: %s: %w", v.base, err)
	}
	select {
	case v.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("volume: %s: %w", v.base, ctx.Err())
	case <-v.stopped:
		return fmt.Errorf("volume: %s: %w", v.base, ErrClosed)
	}
	<-r.done
	return r.err
}

// Write appends needle n and returns once it is on stable storage; from then
// on Read returns it. If n.AppendNs is 0 it is set to max(now, last+1) in
// nanoseconds. An existing key is overwritten. Errors: ErrTooLarge,
// ErrReadOnly, ErrNoSpace (nothing was stored), ErrClosed, ctx's error (only
// if n was not handed to the writer yet), or an IO error (the volume may
// have turned read-only; the needle may or may not be stored).
func (v *Volume) Write(ctx context.Context, n *Needle) error {
	if n.Deleted {
		return fmt.Errorf("volume: write of needle %d marked deleted; use Delete: %w", n.Key, ErrInvalid)
	}
	if len(n.Data) > MaxNeedleSize {
		return fmt.Errorf("volume: needle %d has %d bytes, limit %d: %w", n.Key, len(n.Data), MaxNeedleSize, ErrTooLarge)
	}
	r := &request{kind: reqWrite, rec: EncodeRecord(n), assignNs: n.AppendNs == 0}
	if err := v.submit(ctx, r); err != nil {
		return err
	}
	n.AppendNs = r.appendNs
	return nil
}

// WriteRecord appends rec, a record from ReadRecord on another replica, as
// is, with the durability of Write. It is indexed under the merge rule (the
// higher AppendNs wins, a tie goes to rec), which repairs a corrupt needle.
// rec failing its checks (those of DecodeRecord) returns ErrCorrupt and stores nothing.
func (v *Volume) WriteRecord(ctx context.Context, rec []byte) error {
	if _, err := verifyRecord(rec); err != nil {
		return fmt.Errorf("volume: refusing record for %s: %w", v.base, err)
	}
	return v.submit(ctx, &request{kind: reqWrite, rec: rec})
}

// writeEncoded appends rec, a record this server just built with
// EncodeRecord (its checks would only recompute what was computed), with
// the durability of Write, indexed like WriteRecord's.
func (v *Volume) writeEncoded(ctx context.Context, rec []byte) error {
	return v.submit(ctx, &request{kind: reqWrite, rec: rec})
}

// Delete appends a tombstone for key, durably, and returns its AppendNs.
// Errors: ErrNotFound, ErrCookieMismatch, ErrDeleted (already deleted), and
// those of Write.
func (v *Volume) Delete(ctx context.Context, key uint64, cookie uint32) (appendNs uint64, err error) {
	r := &request{kind: reqDelete, key: key, cookie: cookie}
	if err := v.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.appendNs, nil
}

// run is the writer goroutine: it owns appends and vacuum, and runs the
// syncer goroutine (see pipeline).
//
// Group commit is a pipeline of two goroutines. The writer collects the
// queued requests into a batch, stages it (checks deletes, assigns append
// times, lays the records out after the last batch written) and appends it
// with one pwritev, then hands it to the syncer and goes on with the next
// batch without waiting. The syncer takes every batch appended so far,
// makes them durable with one fdatasync, which therefore started after
// their bytes were written, and only then indexes them (in file order),
// advances the synced size and acknowledges them. So the disk syncs one
// batch while the next is received and written, and a needle is
// acknowledged and readable only after a sync that followed its write, as
// before. Only a batch of holdBytes or more is appended while a sync runs
// (its write is worth overlapping); a smaller one keeps collecting
// requests until the sync returns and goes to the next sync whole, so
// small writes share fdatasyncs as they did before the pipeline. A failed
// fdatasync turns the volume read-only and fails every batch written since
// the last good one, unacknowledged; the writer writes nothing more.
// Vacuum, a failed append's rollback and Close first wait until every
// appended batch is finished (drain).
func (v *Volume) run() {
	defer close(v.stopped)
	v.w = writerState{end: v.mu.size, lastNs: v.mu.lastNs, overlay: make(map[uint64]stagedEntry)}
	syncerDone := v.pipe.start(v)
	defer func() {
		v.pipe.stop()
		<-syncerDone
	}()
	for {
		select {
		case <-v.quit:
			for {
				select {
				case r := <-v.reqs:
					r.finish(fmt.Errorf("volume: %s: %w", v.base, ErrClosed))
				default:
					return
				}
			}
		case r := <-v.reqs:
			if r.kind == reqVacuum {
				v.runVacuum(r)
				continue
			}
			v.pipe.waitRoom()
			batch, size := []*request{r}, len(r.rec)
			var vac *request
		collect:
			for len(batch) < maxBatchWrites && size < maxBatchBytes {
				var r *request
				select {
				case r = <-v.reqs:
				default:
					// A batch smaller than holdBytes, whose write costs
					// little, waits for more requests while a sync runs.
					if size >= v.holdBytes || !v.pipe.busy() {
						break collect
					}
					select {
					case r = <-v.reqs:
					case <-v.pipe.idle:
						break collect
					}
				}
				if r.kind == reqVacuum {
					vac = r
					break collect
				}
				batch = append(batch, r)
				size += len(r.rec)
			}
			v.commit(batch)
			if vac != nil {
				v.runVacuum(vac)
			}
		}
	}
}

// runVacuum runs a vacuum once every appended batch is finished, and
// starts the next batch at the end of the (new) file.
func (v *Volume) runVacuum(r *request) {
	v.pipe.drain()
	v.vacuum(r)
	v.w.end = v.mu.size
	v.w.pruneSynced(v.pipe.finishedSeq())
}

// writerState is the writer goroutine's view of the file, which runs ahead
// of the index by the batches appended but not yet synced. Only the writer
// goroutine touches it.
type writerState struct {
	end    int64  // where the next batch goes: the file's length, synced or not
	lastNs uint64 // highest AppendNs written
	seq    uint64 // of the last batch appended
	// overlay holds the latest entry of every key written by a batch that
	// may not be indexed yet, so that staging sees it; unsynced lists those
	// batches in order, to prune the overlay once the syncer is past them.
	overlay  map[uint64]stagedEntry
	unsynced []*appended
}

// stagedEntry is a key's entry in the overlay and the batch that wrote it.
type stagedEntry struct {
	e   entry
	seq uint64
}

// pruneSynced drops the overlay entries of batches up to seq finished,
// which the syncer indexed (or failed) before saying so.
func (w *writerState) pruneSynced(seq uint64) {
	for len(w.unsynced) > 0 && w.unsynced[0].seq <= seq {
		b := w.unsynced[0]
		for _, k := range b.keys {
			if se, ok := w.overlay[k]; ok && se.seq == b.seq {
				delete(w.overlay, k)
			}
		}
		w.unsynced[0] = nil
		w.unsynced = w.unsynced[1:]
	}
}

// staged is a batch ready to append: its bytes and the index entries of
// the accepted requests.
type staged struct {
	recs     [][]byte // the records, in file order
	size     int64    // their total length
	accepted []*request
	keys     []uint64
	entries  []entry
	lastNs   uint64
	pending  map[uint64]entry // per key, the entry it has once the batch is indexed
}

// commit stages the batch and appends it with one write, then hands it to
// the syncer. Rejected requests are finished now, the others by the
// syncer or on a failed write.
func (v *Volume) commit(batch []*request) {
	v.mu.RLock()
	roErr := v.writableErrLocked()
	v.mu.RUnlock()
	if roErr != nil {
		for _, r := range batch {
			r.finish(roErr)
		}
		return
	}
	w := &v.w
	w.pruneSynced(v.pipe.finishedSeq())
	start := w.end
	st := v.stage(batch, start)
	if len(st.accepted) == 0 {
		return
	}
	began := time.Now()
	f := v.mu.file // only the writer changes it
	if err := v.append(f, start, st.recs); err != nil {
		for _, r := range st.accepted {
			r.finish(err)
		}
		return
	}
	w.seq++
	w.end = start + st.size
	w.lastNs = st.lastNs
	for k, e := range st.pending {
		w.overlay[k] = stagedEntry{e, w.seq}
	}
	b := &appended{seq: w.seq, file: f, end: w.end, size: st.size, lastNs: st.lastNs, began: began,
		reqs: st.accepted, keys: st.keys, entries: st.entries}
	w.unsynced = append(w.unsynced, b)
	v.pipe.push(b)
}

// stage checks deletes against the index (and the batches not yet indexed,
// and earlier requests of the batch), assigns AppendNs and lays the
// records out from offset start. Rejected requests are finished.
func (v *Volume) stage(batch []*request, start int64) staged {
	now := uint64(time.Now().UnixNano())
	st := staged{lastNs: v.w.lastNs, pending: make(map[uint64]entry)}
	lookup := func(key uint64) (entry, bool) {
		if e, ok := st.pending[key]; ok {
			return e, true
		}
		if se, ok := v.w.overlay[key]; ok {
			return se.e, true
		}
		v.mu.RLock()
		defer v.mu.RUnlock()
		e, ok := v.mu.index[key]
		return e, ok
	}
	for _, r := range batch {
		if r.kind == reqDelete {
			cur, ok := lookup(r.key)
			var err error
			switch {
			case !ok:
				err = ErrNotFound
			case cur.cookie != r.cookie:
				err = ErrCookieMismatch
			case cur.deleted:
				err = ErrDeleted
			}
			if err != nil {
				r.finish(fmt.Errorf("volume: delete needle %d in volume %s: %w", r.key, v.base, err))
				continue
			}
			r.rec = EncodeRecord(&Needle{Key: r.key, Cookie: r.cookie, Deleted: true})
			r.assignNs = true
		}
		if r.assignNs {
			ns := max(now, st.lastNs+1)
			binary.LittleEndian.PutUint64(r.rec[offAppendNs:], ns)
			binary.LittleEndian.PutUint32(r.rec[offHeaderCRC:], crc32c(r.rec[offFlags:headerSize]))
		}
		h, _ := decodeHeader(r.rec) // valid: built by EncodeRecord or checked by WriteRecord
		r.appendNs = h.appendNs
		st.lastNs = max(st.lastNs, h.appendNs)
		e := entry{off: start + st.size, format: h.format, dataLen: h.dataLen, cookie: h.cookie, appendNs: h.appendNs,
			crc: h.dataCRC, deleted: h.flags&flagTombstone != 0}
		if old, ok := lookup(h.key); !ok || e.appendNs >= old.appendNs {
			st.pending[h.key] = e
		}
		st.recs = append(st.recs, r.rec)
		st.size += int64(len(r.rec))
		st.accepted = append(st.accepted, r)
		st.entries = append(st.entries, e)
		st.keys = append(st.keys, h.key)
	}
	return st
}

// append writes the records recs at start of f with one pwritev (a single
// record, a large needle most often, is written as is either way). On a
// failed write it waits until the syncer has finished every earlier batch,
// so that nothing else syncs the file meanwhile, and truncates the file
// back to start (a failure to do so turns the volume read-only; so does an
// earlier batch's failed sync, after which nothing is undone).
func (v *Volume) append(f vfs.File, start int64, recs [][]byte) error {
	_, err := f.WritevAt(recs, start)
	if err == nil {
		return nil
	}
	v.pipe.drain()
	v.mu.RLock()
	fatal := v.mu.fatal
	v.mu.RUnlock()
	if fatal != nil {
		return fmt.Errorf("volume: append to %s failed after an earlier fdatasync failed, volume is read-only: %w", v.base, err)
	}
	if terr := v.truncateBack(start); terr != nil {
		return fmt.Errorf("volume: append to %s failed (%w), and so did undoing it: %w", v.base, err, terr)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("volume: append to %s: %w: %w", v.base, ErrNoSpace, err)
	}
	return fmt.Errorf("volume: append to %s: %w", v.base, err)
}

// truncateBack removes a failed append; if that fails the volume turns
// read-only. No batch may be in flight.
func (v *Volume) truncateBack(start int64) error {
	f := v.mu.file
	err := f.Truncate(start)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		err = fmt.Errorf("volume: truncate %s back to %d after a failed append: %w", v.path(extData), start, err)
		v.mu.Lock()
		v.setFatalLocked(err)
		v.mu.Unlock()
	}
	return err
}
