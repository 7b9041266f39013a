package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Limits of one group-commit batch.
const (
	maxBatchWrites = 256
	maxBatchBytes  = 16 << 20
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

// run is the writer goroutine: it owns appends, syncs and vacuum.
func (v *Volume) run() {
	defer close(v.stopped)
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
				v.vacuum(r)
				continue
			}
			batch, size := []*request{r}, len(r.rec)
			var vac *request
		collect:
			for len(batch) < maxBatchWrites && size < maxBatchBytes {
				select {
				case r := <-v.reqs:
					if r.kind == reqVacuum {
						vac = r
						break collect
					}
					batch = append(batch, r)
					size += len(r.rec)
				default:
					break collect
				}
			}
			v.commit(batch)
			if vac != nil {
				v.vacuum(vac)
			}
		}
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
}

// commit appends the batch with one write and one fdatasync, then indexes
// it. Every request is finished.
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
	start := v.mu.size // only the writer changes size
	st := v.stage(batch, start)
	if len(st.accepted) == 0 {
		return
	}
	began := time.Now()
	if err := v.append(start, st.recs, st.size); err != nil {
		for _, r := range st.accepted {
			r.finish(err)
		}
		return
	}
	v.mu.Lock()
	for i, e := range st.entries {
		v.applyLocked(st.keys[i], e)
	}
	v.mu.size = start + st.size
	v.mu.lastNs = st.lastNs
	v.mu.Unlock()
	v.syncs.Add(1)
	v.batched.Add(uint64(len(st.accepted)))
	v.commits.record(time.Since(began), len(st.accepted))
	if f := v.observer.Load(); f != nil {
		(*f)(len(st.accepted))
	}
	for _, r := range st.accepted {
		r.finish(nil)
	}
}

// stage checks deletes against the index (and earlier requests of the
// batch), assigns AppendNs and lays the records out from offset start.
// Rejected requests are finished.
func (v *Volume) stage(batch []*request, start int64) staged {
	now := uint64(time.Now().UnixNano())
	st := staged{lastNs: v.mu.lastNs}
	pending := make(map[uint64]entry) // index overlay for this batch
	lookup := func(key uint64) (entry, bool) {
		if e, ok := pending[key]; ok {
			return e, true
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
			pending[h.key] = e
		}
		st.recs = append(st.recs, r.rec)
		st.size += int64(len(r.rec))
		st.accepted = append(st.accepted, r)
		st.entries = append(st.entries, e)
		st.keys = append(st.keys, h.key)
	}
	return st
}

// append writes the records recs (size bytes in all) at start with one
// write and fdatasyncs. On a failed write it truncates the file back to
// start (a failure to do so turns the volume read-only); on a failed sync
// the volume turns read-only: the state of the file is unknown and the
// sync is never retried.
func (v *Volume) append(start int64, recs [][]byte, size int64) error {
	f := v.mu.file
	buf := recs[0] // one record (a large needle, most often) is written as is
	if len(recs) > 1 {
		buf = make([]byte, 0, size)
		for _, r := range recs {
			buf = append(buf, r...)
		}
	}
	if _, err := f.WriteAt(buf, start); err != nil {
		if terr := v.truncateBack(start); terr != nil {
			return fmt.Errorf("volume: append to %s failed (%w), and so did undoing it: %w", v.base, err, terr)
		}
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("volume: append to %s: %w: %w", v.base, ErrNoSpace, err)
		}
		return fmt.Errorf("volume: append to %s: %w", v.base, err)
	}
	if err := f.Sync(); err != nil {
		err = fmt.Errorf("volume: fdatasync of %s failed, volume is now read-only: %w", v.path(extData), err)
		v.mu.Lock()
		v.mu.size = start + size
		v.setFatalLocked(err)
		v.mu.Unlock()
		return err
	}
	return nil
}

// truncateBack removes a failed append; if that fails the volume turns
// read-only.
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
