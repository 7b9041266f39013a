package master

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// memSink is a raft.SnapshotSink writing to memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func applyCmd(f *fsm, idx uint64, b []byte) any {
	return f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: b})
}

// testLog is a command sequence exercising every command type, including
// rejected and malformed ones.
func testLog() [][]byte {
	srv := func(url, dc, rack string) []byte {
		return registerServerCmd(ServerRecord{URL: url, PublicURL: url, GRPCPort: 18080, DC: dc, Rack: rack, MaxVolumes: 8})
	}
	return [][]byte{
		srv("127.0.0.1:8080", "dc1", "r1"),
		srv("127.0.0.2:8080", "dc1", "r1"),
		srv("127.0.0.3:8080", "dc2", "r1"),
		reserveVolumeIDCmd(),
		addVolumeCmd(VolumeRecord{ID: 1, Replication: "001", Replicas: []string{"127.0.0.1:8080", "127.0.0.2:8080"}, Primary: "127.0.0.1:8080"}),
		addVolumeCmd(VolumeRecord{ID: 1, Replication: "001", Replicas: []string{"127.0.0.1:8080"}, Primary: "127.0.0.1:8080"}), // duplicate
		addVolumeCmd(VolumeRecord{ID: 9, Replication: "000", Replicas: []string{"127.0.0.1:8080"}, Primary: "127.0.0.1:8080"}), // not reserved
		leaseKeysCmd(10000),
		[]byte(`{"v":1,"type":"drop_everything"}`),
		[]byte(`not json`),
		reserveVolumeIDCmd(),
		addVolumeCmd(VolumeRecord{ID: 2, Collection: "pics", Replication: "100", Replicas: []string{"127.0.0.3:8080", "127.0.0.1:8080"}, Primary: "127.0.0.3:8080"}),
		setPrimaryCmd(1, "127.0.0.2:8080"),
		setPrimaryCmd(1, "127.0.0.3:8080"), // not a replica
		setPrimaryCmd(7, "127.0.0.3:8080"), // unknown volume
		leaseKeysCmd(5),
		srv("127.0.0.2:8080", "dc1", "r2"), // moved rack
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

func TestFSMApply(t *testing.T) {
	f := newFSM()
	var results []any
	for i, c := range testLog() {
		results = append(results, applyCmd(f, uint64(i+1), c))
	}
	wantErr := map[int]error{5: ErrRejected, 6: ErrRejected, 8: ErrBadCommand, 9: ErrBadCommand, 13: ErrRejected, 14: ErrRejected}
	for i, r := range results {
		err, isErr := r.(error)
		if want, ok := wantErr[i]; ok {
			if !errors.Is(err, want) {
				t.Errorf("command %d: response %v, want %v", i, r, want)
			}
		} else if isErr {
			t.Errorf("command %d: unexpected error %v", i, err)
		}
	}
	if got := results[3]; got != uint32(1) {
		t.Errorf("first reserved volume id %v, want 1", got)
	}
	if got := results[7]; got != (KeyRange{Start: 1, End: 10001}) {
		t.Errorf("first lease %v", got)
	}
	if got := results[15]; got != (KeyRange{Start: 10001, End: 10006}) {
		t.Errorf("second lease %v", got)
	}
	f.view(func(s *state) {
		if s.MaxVolumeID != 2 || s.MaxFileKey != 10005 || len(s.Volumes) != 2 || len(s.Servers) != 3 {
			t.Errorf("state %+v", s)
		}
		if s.Volumes[1].Primary != "127.0.0.2:8080" {
			t.Errorf("volume 1 primary %s", s.Volumes[1].Primary)
		}
		if s.Servers["127.0.0.2:8080"].Rack != "r2" {
			t.Errorf("server update lost: %+v", s.Servers["127.0.0.2:8080"])
		}
	})
}

func TestFSMDeterministicSnapshotRestore(t *testing.T) {
	a, b := newFSM(), newFSM()
	for i, c := range testLog() {
		applyCmd(a, uint64(i+1), c)
		applyCmd(b, uint64(i+1), c)
	}
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatalf("same log, different state:\n%s\n%s", sa, sb)
	}

	// Restore into a fresh FSM, then apply more on both: still identical.
	c := newFSM()
	if err := c.Restore(io.NopCloser(bytes.NewReader(sa))); err != nil {
		t.Fatal(err)
	}
	if sc := snapshotBytes(t, c); !bytes.Equal(sa, sc) {
		t.Fatalf("restore changed state:\n%s\n%s", sa, sc)
	}
	more := [][]byte{reserveVolumeIDCmd(), leaseKeysCmd(3)}
	for i, cmd := range more {
		ra, rc := applyCmd(a, uint64(100+i), cmd), applyCmd(c, uint64(100+i), cmd)
		if !reflect.DeepEqual(ra, rc) {
			t.Fatalf("after restore: %v vs %v", ra, rc)
		}
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, c)) {
		t.Fatal("restored FSM diverged")
	}

	// A snapshot taken before more commands does not see them.
	snap, _ := a.Snapshot()
	applyCmd(a, 200, leaseKeysCmd(1))
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	st, err := decodeSnapshot(&sink)
	if err != nil {
		t.Fatal(err)
	}
	if st.MaxFileKey != 10008 {
		t.Fatalf("snapshot captured max key %d, want 10008", st.MaxFileKey)
	}
}

func TestFSMRestoreRejectsGarbage(t *testing.T) {
	f := newFSM()
	applyCmd(f, 1, leaseKeysCmd(7))
	for _, in := range []string{"", "{}", `{"v":2,"state":{}}`, `{"v":1,"state":{"volumes":{"3":{"id":4}}}}`, "garbage"} {
		if err := f.Restore(io.NopCloser(bytes.NewReader([]byte(in)))); err == nil {
			t.Errorf("restore %q succeeded", in)
		}
	}
	f.view(func(s *state) {
		if s.MaxFileKey != 7 {
			t.Fatalf("failed restore changed state: %+v", s)
		}
	})
}

func TestFSMIgnoresNonCommandEntries(t *testing.T) {
	f := newFSM()
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogBarrier}); r != nil {
		t.Fatalf("barrier: %v", r)
	}
}

func TestFSMSetReplicas(t *testing.T) {
	const a, b, c, d = "127.0.0.1:8080", "127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"
	f := newFSM()
	applyCmd(f, 1, reserveVolumeIDCmd())
	applyCmd(f, 2, addVolumeCmd(VolumeRecord{ID: 1, Replication: "001", Replicas: []string{a, b}, Primary: a}))
	steps := []struct {
		cmd  []byte
		want error
	}{
		{setReplicasCmd(1, []string{a, c}, a, []string{b, a}), nil},           // replace b by c; expect in any order
		{setReplicasCmd(1, []string{a, d}, a, []string{a, b}), ErrRejected},   // planned from a stale set
		{setReplicasCmd(2, []string{a}, a, []string{a}), ErrRejected},         // unknown volume
		{setReplicasCmd(1, []string{c, d}, a, []string{a, c}), ErrBadCommand}, // primary not a replica
		{setReplicasCmd(1, []string{c, c}, c, []string{a, c}), ErrBadCommand}, // duplicate
		{setReplicasCmd(1, []string{a, c, d}, d, []string{a, c}), nil},        // add d, move the primary
		{setReplicasCmd(1, []string{c, d}, d, []string{a, c, d}), nil},        // drop a
		{encodeCommand(command{Type: cmdSetPrimary, VolumeID: 1, Primary: c, Expect: []string{c}}), ErrBadCommand},
		{registerServerCmd(ServerRecord{URL: c, MaxVolumes: 8}), nil},
		{setDrainingCmd(c, true), nil},
		{setDrainingCmd(d, true), ErrRejected}, // not registered
		{encodeCommand(command{Type: cmdSetDraining, URL: c, VolumeID: 1}), ErrBadCommand},
		{encodeCommand(command{Type: cmdLeaseKeys, N: 1, Draining: true}), ErrBadCommand},
	}
	for i, s := range steps {
		r := applyCmd(f, uint64(3+i), s.cmd)
		err, _ := r.(error)
		if (s.want == nil) != (err == nil) || (s.want != nil && !errors.Is(err, s.want)) {
			t.Errorf("step %d: response %v, want %v", i, r, s.want)
		}
	}
	f.view(func(s *state) {
		v := s.Volumes[1]
		if !reflect.DeepEqual(v.Replicas, []string{c, d}) || v.Primary != d {
			t.Errorf("volume 1 is %+v, want replicas [%s %s] primary %s", v, c, d, d)
		}
		if !s.Servers[c].Draining {
			t.Errorf("server %s not draining: %+v", c, s.Servers[c])
		}
	})
}
