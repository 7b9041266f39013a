package filer

import (
	"encoding/binary"
	"syscall"

	"github.com/cairn-storage/cairn/internal/fid"
)

// Needle reference counting. Every slice with a Fid in any inode (live,
// orphaned or in a snapshot) is one reference to that needle; refs holds
// the count of every needle with at least one. The command that drops the
// last reference moves the fid to the delete queue in the same
// transaction. The GC worker reads PendingDeletes, deletes the needles on
// the volume servers and then applies DequeueDeleted. A fid on the queue
// can not be referenced again (ESTALE): its needle may already be gone.
// Inline data (inline.go) is counted the same way but never queued: the
// command that drops its last reference deletes it.

func (t *txn) addSlices(sl []Slice) {
	for _, s := range sl {
		if s.Fid == "" {
			continue
		}
		k := []byte(s.Fid)
		t.must(t.uploads.Delete(k)) // referenced now: no longer an upload in flight
		var n uint64
		if v := t.refs.Get(k); v != nil {
			n = binary.BigEndian.Uint64(v)
		}
		t.must(t.refs.Put(k, u64key(n+1)))
	}
}

func (t *txn) dropSlices(sl []Slice) {
	for _, s := range sl {
		if s.Fid == "" {
			continue
		}
		k := []byte(s.Fid)
		v := t.refs.Get(k)
		if v == nil {
			t.mustf("needle %s referenced without a count", s.Fid)
		}
		if n := binary.BigEndian.Uint64(v); n > 1 {
			t.must(t.refs.Put(k, u64key(n-1)))
			continue
		}
		t.freeNeedle(k)
	}
}

// freeNeedle drops the count of needle k, which no piece names any more:
// an inline blob (held by the filer itself) goes with it, a needle on the
// volume servers goes to the delete queue.
func (t *txn) freeNeedle(k []byte) {
	t.must(t.refs.Delete(k))
	if fid.IsInline(string(k)) {
		t.dropInline(k)
		return
	}
	t.must(t.deleteq.Put(k, []byte{}))
}

func (t *txn) dequeueDeleted(op *DequeueDeleted) *Result {
	for _, f := range op.Fids {
		if f == "" {
			return errnoResult(syscall.EINVAL)
		}
	}
	for _, f := range op.Fids {
		t.must(t.deleteq.Delete([]byte(f)))
	}
	return &Result{}
}

// PendingDeletes returns up to limit fids on the delete queue (all if
// limit <= 0), in fid order.
func (s *State) PendingDeletes(limit int) ([]string, error) {
	var out []string
	err := s.view(func(t *txn) error {
		c := t.deleteq.Cursor()
		for k, _ := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Next() {
			out = append(out, string(k))
		}
		return nil
	})
	return out, err
}

// RefCount returns the number of references to needle fid.
func (s *State) RefCount(fid string) (uint64, error) {
	var n uint64
	err := s.view(func(t *txn) error {
		if v := t.refs.Get([]byte(fid)); v != nil {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}
