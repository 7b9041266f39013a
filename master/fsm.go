package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrRejected is wrapped by the error response of a well-formed command that
// the current state does not allow (for example a volume id added twice).
var ErrRejected = errors.New("master: command rejected")

// state is the master's replicated state. It is only mutated by fsm.Apply.
type state struct {
	Servers     map[string]ServerRecord  `json:"servers"`
	Volumes     map[uint32]*VolumeRecord `json:"volumes"`
	MaxVolumeID uint32                   `json:"max_volume_id"`
	MaxFileKey  uint64                   `json:"max_file_key"` // every key <= it has been leased
}

func newState() *state {
	return &state{Servers: map[string]ServerRecord{}, Volumes: map[uint32]*VolumeRecord{}}
}

func (s *state) clone() *state {
	c := &state{
		Servers:     maps.Clone(s.Servers),
		Volumes:     make(map[uint32]*VolumeRecord, len(s.Volumes)),
		MaxVolumeID: s.MaxVolumeID,
		MaxFileKey:  s.MaxFileKey,
	}
	for id, v := range s.Volumes {
		vc := *v
		vc.Replicas = slices.Clone(v.Replicas)
		c.Volumes[id] = &vc
	}
	return c
}

// fsm is the master's raft.FSM. Apply, Snapshot and Restore are called by
// raft from one goroutine; readers use view, which takes the read lock.
type fsm struct {
	mu sync.RWMutex // guards st
	st *state
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm { return &fsm{st: newState()} }

// view calls fn with the state under the read lock; fn must not keep
// references into it.
func (f *fsm) view(fn func(*state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Apply applies one committed command. The response is an error (wrapping
// ErrBadCommand or ErrRejected) when the command is not applied, else a
// uint32 (reserve_volume_id), a KeyRange (lease_keys) or nil.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.apply(c)
}

func (s *state) apply(c command) any {
	switch c.Type {
	case cmdRegisterServer:
		s.Servers[c.Server.URL] = *c.Server
		return nil
	case cmdReserveVolumeID:
		if s.MaxVolumeID == ^uint32(0) {
			return fmt.Errorf("%w: volume ids are exhausted", ErrRejected)
		}
		s.MaxVolumeID++
		return s.MaxVolumeID
	case cmdAddVolume:
		v := *c.Volume
		if v.ID > s.MaxVolumeID {
			return fmt.Errorf("%w: volume id %d was never reserved (max %d)", ErrRejected, v.ID, s.MaxVolumeID)
		}
		if _, ok := s.Volumes[v.ID]; ok {
			return fmt.Errorf("%w: volume %d already exists", ErrRejected, v.ID)
		}
		v.Replicas = slices.Clone(v.Replicas)
		s.Volumes[v.ID] = &v
		return nil
	case cmdSetPrimary:
		v, ok := s.Volumes[c.VolumeID]
		if !ok {
			return fmt.Errorf("%w: volume %d not found", ErrRejected, c.VolumeID)
		}
		if !slices.Contains(v.Replicas, c.Primary) {
			return fmt.Errorf("%w: %s is not a replica of volume %d", ErrRejected, c.Primary, c.VolumeID)
		}
		v.Primary = c.Primary
		return nil
	case cmdSetDraining:
		srv, ok := s.Servers[c.URL]
		if !ok {
			return fmt.Errorf("%w: volume server %s is not registered", ErrRejected, c.URL)
		}
		srv.Draining = c.Draining
		s.Servers[c.URL] = srv
		return nil
	case cmdSetReplicas:
		v, ok := s.Volumes[c.VolumeID]
		if !ok {
			return fmt.Errorf("%w: volume %d not found", ErrRejected, c.VolumeID)
		}
		if !sameSet(v.Replicas, c.Expect) {
			return fmt.Errorf("%w: the replica set of volume %d is %v, not %v as planned; it changed meanwhile", ErrRejected, c.VolumeID, v.Replicas, c.Expect)
		}
		v.Replicas = slices.Clone(c.Replicas)
		v.Primary = c.Primary
		return nil
	case cmdLeaseKeys:
		start := s.MaxFileKey + 1
		end := start + c.N
		if end < start {
			return fmt.Errorf("%w: file keys are exhausted", ErrRejected)
		}
		s.MaxFileKey = end - 1
		return KeyRange{Start: start, End: end}
	}
	// decodeCommand only lets known types through.
	return fmt.Errorf("%w: unknown command type %q", ErrBadCommand, c.Type)
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Snapshot captures a copy of the state; Persist writes it as JSON.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{st: f.st.clone()}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := decodeSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

type snapshotFile struct {
	V     int    `json:"v"`
	State *state `json:"state"`
}

func decodeSnapshot(r io.Reader) (*state, error) {
	var sf snapshotFile
	if err := json.NewDecoder(r).Decode(&sf); err != nil {
		return nil, fmt.Errorf("master: decode snapshot: %w", err)
	}
	if sf.V != commandVersion || sf.State == nil {
		return nil, fmt.Errorf("master: snapshot version %d, this master understands %d", sf.V, commandVersion)
	}
	st := sf.State
	if st.Servers == nil {
		st.Servers = map[string]ServerRecord{}
	}
	if st.Volumes == nil {
		st.Volumes = map[uint32]*VolumeRecord{}
	}
	for id, v := range st.Volumes {
		if v == nil || v.ID != id {
			return nil, fmt.Errorf("master: snapshot volume entry %d is inconsistent", id)
		}
	}
	return st, nil
}

type fsmSnapshot struct {
	st *state
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(snapshotFile{V: commandVersion, State: s.st}); err != nil {
		sink.Cancel()
		return fmt.Errorf("master: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
