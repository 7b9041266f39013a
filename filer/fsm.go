package filer

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// FSM is the filer's raft.FSM over a State. As raft requires, Apply,
// Snapshot and Restore are called from one goroutine; Persist and Release
// of a snapshot may run concurrently with Apply. Reads go to State()
// directly and may run at any time.
type FSM struct {
	st *State
	// onApply, if set, is called on the FSM goroutine after every applied
	// command (successful or refused) and must not block.
	onApply func(index uint64, c *Command, r *Result)
	// proposed maps the first byte of the encoding of a command this
	// member proposes (as leader) to the command itself, from the proposal
	// until Propose returns: Raft hands the leader's FSM the very bytes
	// that were proposed, so the FSM takes the command from here instead of
	// decoding it again. Every other member, and a proposal that outlived
	// its call, decodes the log entry.
	proposed sync.Map // *byte -> *Command

	// applying is the log entry being applied: its index, and when its
	// Apply began (unix ns; 0 while none runs). See Applying.
	applying struct {
		index atomic.Uint64
		since atomic.Int64
	}
	// beforeApply, if set (tests), runs on the FSM goroutine before each
	// command is applied.
	beforeApply atomic.Pointer[func(index uint64)]
}

// Applying returns the index of the log entry being applied and how long
// its Apply has been running; 0 and 0 while none is. An apply that runs
// for long means the state machine is stuck: every later change waits.
func (f *FSM) Applying() (index uint64, running time.Duration) {
	since := f.applying.since.Load()
	if since == 0 {
		return 0, 0
	}
	return f.applying.index.Load(), max(0, time.Since(time.Unix(0, since)))
}

// Proposal registers c, encoded as b, until the returned function is
// called (after the proposal's Raft apply returned).
func (f *FSM) Proposal(b []byte, c *Command) (done func()) {
	if len(b) == 0 {
		return func() {}
	}
	key := &b[0]
	f.proposed.Store(key, c)
	return func() { f.proposed.Delete(key) }
}

// command returns the command of log entry data: the proposed one if
// data is the encoding of a proposal of this member, else its decoding.
func (f *FSM) command(data []byte) (*Command, error) {
	if len(data) > 0 {
		if c, ok := f.proposed.LoadAndDelete(&data[0]); ok {
			return c.(*Command), nil
		}
	}
	return DecodeCommand(data)
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM creates an FSM with an empty state at path (any old file there is
// replaced: raft rebuilds the state from its snapshot and log).
func NewFSM(path string) (*FSM, error) {
	st, err := OpenState(path)
	if err != nil {
		return nil, err
	}
	return &FSM{st: st}, nil
}

// State returns the state for reads.
func (f *FSM) State() *State { return f.st }

// Close closes the state.
func (f *FSM) Close() error { return f.st.Close() }

// Apply applies a committed log entry. The response is the *Result of the
// command, or an error wrapping ErrBadCommand for an entry that does not
// decode (it changes nothing but the apply index). Entries other than
// commands only advance the apply index. An IO error of the state file
// panics: the state no longer matches the log, and the process must
// restart and rebuild it.
func (f *FSM) Apply(l *raft.Log) any {
	f.applying.index.Store(l.Index)
	f.applying.since.Store(time.Now().UnixNano())
	defer f.applying.since.Store(0)
	c := &Command{}
	var decodeErr error
	if l.Type == raft.LogCommand {
		c, decodeErr = f.command(l.Data)
	}
	if l.Type != raft.LogCommand || decodeErr != nil {
		if err := f.st.setApplyIndex(l.Index); err != nil {
			panic(fmt.Sprintf("filer: state file failed at log index %d: %v", l.Index, err))
		}
		if decodeErr != nil {
			return fmt.Errorf("log index %d: %w", l.Index, decodeErr)
		}
		return nil
	}
	if fn := f.beforeApply.Load(); fn != nil {
		(*fn)(l.Index)
	}
	res, err := f.st.Apply(l.Index, c)
	if err != nil {
		panic(fmt.Sprintf("filer: state file failed at log index %d: %v", l.Index, err))
	}
	if f.onApply != nil {
		f.onApply(l.Index, c, res)
	}
	return res
}

// Snapshot captures the state in a read transaction; Persist writes it.
// While the snapshot is held, an Apply that must grow the state file's
// memory map waits for Persist to finish.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.st.mu.RLock()
	if err := f.st.flushLocked(); err != nil {
		f.st.mu.RUnlock()
		return nil, fmt.Errorf("filer: snapshot: %w", err)
	}
	tx, err := f.st.db.Begin(false)
	if err != nil {
		f.st.mu.RUnlock()
		return nil, fmt.Errorf("filer: snapshot: %w", err)
	}
	return &fsmSnapshot{st: f.st, tx: tx}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.st.Restore(rc)
}

type fsmSnapshot struct {
	st *State
	tx *bolt.Tx // read transaction; State.mu is read-held until Release
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("filer: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {
	if s.tx != nil {
		s.tx.Rollback()
		s.tx = nil
		s.st.mu.RUnlock()
	}
}
