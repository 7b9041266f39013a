package filer

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Applied commands share bbolt write transactions: Apply leaves its
// changes in the open transaction, and the next read of the state, a
// snapshot, or the batch limit commits them. The state file is a cache of
// the Raft log (it is never synced and is rebuilt at every start), so a
// commit only makes the changes visible to readers; committing once per
// batch instead of once per command saves bbolt's page writes, its
// allocation and the opening of the buckets for every command but the
// first. See "Applied commands share transactions" in docs/filer.md.
const (
	// maxBatchCommands and maxBatchBytes bound what an open transaction
	// holds in memory: commands, and bytes of inline data.
	maxBatchCommands = 64
	maxBatchBytes    = 4 << 20
)

// batch is the open write transaction and what was applied in it, in
// order, so that it can be rebuilt after a refused command is rolled back.
type batch struct {
	tx    *bolt.Tx
	base  *txn // the buckets of tx
	cmds  []batched
	bytes int
}

// batched is one entry applied in a batch: a command, or (c nil) an
// entry that only advanced the apply index.
type batched struct {
	index uint64
	c     *Command
}

// txn returns a typed accessor of the batch's transaction for a command
// of time now (the bucket handles are the batch's).
func (b *batch) txn(now int64) *txn {
	t := *b.base
	t.now = now
	return &t
}

// batchLocked returns the open batch, beginning a write transaction if
// none is open. s.mu is held for reading and s.wmu held.
func (s *State) batchLocked() (*batch, error) {
	if err := s.brokenErr(); err != nil {
		return nil, err
	}
	if s.w == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return nil, err
		}
		s.w = &batch{tx: tx, base: newTxn(tx, 0)}
	}
	return s.w, nil
}

// commitLocked commits the open batch, if any. A failed commit leaves the
// state without changes that were reported applied: it is marked broken,
// and every later Apply and read fails until the process rebuilds the
// state from the log. s.mu is held and s.wmu held.
func (s *State) commitLocked() error {
	if err := s.brokenErr(); err != nil {
		return err
	}
	if s.w == nil {
		return nil
	}
	err := s.w.tx.Commit()
	s.w = nil
	if err != nil {
		// broken is set before pending is cleared: a reader that finds
		// neither set reads without waiting here.
		err = s.markBroken("commit failed", err)
	}
	s.pending.Store(false)
	return err
}

// failLocked drops the open batch after an error that leaves its
// commands, already answered, out of the state: the state is marked
// broken like after a failed commit. s.mu is held and s.wmu held.
func (s *State) failLocked(err error) error {
	s.dropLocked()
	return s.markBroken("failed", err)
}

// markBroken records why the state no longer matches what was applied
// and returns that error. s.wmu is held.
func (s *State) markBroken(what string, err error) error {
	err = fmt.Errorf("filer: state file %s (restart the filer to rebuild it from the log): %w", what, err)
	s.broken.Store(&err)
	return err
}

// brokenErr is the error markBroken recorded, or nil.
func (s *State) brokenErr() error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// rollbackLocked drops the open batch, if any, when the state is being
// replaced or closed. s.mu is held and s.wmu held.
func (s *State) rollbackLocked() {
	if s.w != nil {
		s.dropLocked()
		s.pending.Store(false)
	}
}

// dropLocked rolls back the open batch, if any, and leaves pending as it
// is: when its commands were answered, readers must go on waiting (for a
// rebuilt transaction, or for the broken error) rather than read the
// state without them. s.mu is held and s.wmu held.
func (s *State) dropLocked() {
	if s.w != nil {
		s.w.tx.Rollback()
		s.w = nil
	}
}

// flushLocked commits what Apply left pending, so that a read transaction
// begun after it sees every command applied before it. s.mu is held.
func (s *State) flushLocked() error {
	if !s.pending.Load() && s.broken.Load() == nil {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.commitLocked()
}

// applyBatched applies c (nil: only the index) as log entry index in the
// open batch. A command the namespace refuses rolls back the whole
// transaction, which is then rebuilt by applying the batch's earlier
// commands again (Apply is deterministic, so they give the same results)
// before the refused command's session and index are recorded and the
// batch is committed. s.mu is held for reading and s.wmu held.
func (s *State) applyBatched(index uint64, c *Command) (*Result, error) {
	b, err := s.batchLocked()
	if err != nil {
		return nil, err
	}
	if c != nil {
		ownInline(c)
	}
	var res *Result
	refused := false
	err = catch(func() error {
		res, refused = applyEntry(b.txn(commandTime(c)), index, c)
		return nil
	})
	if err != nil {
		return nil, s.failLocked(err)
	}
	if refused {
		if err := s.rebuildLocked(index, c, res); err != nil {
			return nil, err
		}
		s.setApplied(index)
		return res, nil
	}
	b.cmds = append(b.cmds, batched{index: index, c: c})
	if c != nil {
		for _, d := range inlineOf(c.Op) {
			b.bytes += len(d.Data)
		}
	}
	s.pending.Store(true)
	if len(b.cmds) >= maxBatchCommands || b.bytes >= maxBatchBytes {
		if err := s.commitLocked(); err != nil {
			return nil, err
		}
	}
	s.setApplied(index)
	return res, nil
}

// setApplied records index (0: not from the log) as the last log entry
// applied.
func (s *State) setApplied(index uint64) {
	if index != 0 {
		s.applied.Store(index)
	}
}

// rebuildLocked rolls back the open batch, applies its commands again,
// records the refused command c at index with its result res, and
// commits. pending stays set throughout: the batch's commands were
// answered, so a reader must wait for the rebuilt transaction rather than
// read the state without them.
func (s *State) rebuildLocked(index uint64, c *Command, res *Result) error {
	cmds := s.w.cmds
	s.dropLocked()
	b, err := s.batchLocked()
	if err != nil {
		return s.failLocked(err)
	}
	err = catch(func() error {
		for _, e := range cmds {
			if _, refused := applyEntry(b.txn(commandTime(e.c)), e.index, e.c); refused {
				return fmt.Errorf("%w: log index %d applied again was refused", ErrCorrupt, e.index)
			}
		}
		b.txn(c.Time).finish(index, c, res)
		return nil
	})
	if err != nil {
		return s.failLocked(err)
	}
	s.pending.Store(true)
	return s.commitLocked()
}

// applyEntry applies one log entry in t: c's replayed or new result, its
// session and the apply index; or, for c nil, only the index. refused
// reports a command the namespace refused: t then holds its partial
// changes and must be rolled back.
func applyEntry(t *txn, index uint64, c *Command) (res *Result, refused bool) {
	if c == nil {
		t.setApplyIndex(index)
		return nil, false
	}
	if r := t.replay(c); r != nil {
		t.setApplyIndex(index)
		return r, false
	}
	res = t.apply(c.Op)
	if res.Errno != 0 {
		return res, true
	}
	t.finish(index, c, res)
	return res, false
}

func commandTime(c *Command) int64 {
	if c == nil {
		return 0
	}
	return c.Time
}

// ownInline gives c's inline writes their own copy of their bytes: bbolt
// keeps a reference to a stored value until its transaction commits,
// which for a batch is after the caller (and the Raft log entry the bytes
// were decoded from) has moved on.
func ownInline(c *Command) {
	cs, ok := c.Op.(*CommitSlices)
	if !ok {
		return
	}
	for i := range cs.Inline {
		cs.Inline[i].Data = append([]byte(nil), cs.Inline[i].Data...)
	}
}
