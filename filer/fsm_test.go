package filer

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (m *memSink) ID() string                  { return "test" }
func (m *memSink) Cancel() error               { m.cancelled = true; return nil }
func (m *memSink) Close() error                { m.closed = true; return nil }
func (m *memSink) Write(p []byte) (int, error) { return m.Buffer.Write(p) }

func fsmApply(t *testing.T, f *FSM, index uint64, c *Command) *Result {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(*Result)
	if !ok {
		t.Fatalf("apply at %d returned %T", index, r)
	}
	return r
}

// newTestFSM opens an FSM on a new state file name in dir, closed at
// the end of the test.
func newTestFSM(t *testing.T, dir, name string) *FSM {
	t.Helper()
	f, err := NewFSM(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func dumpOf(t *testing.T, s *State) string {
	var b bytes.Buffer
	if err := s.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFSMSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	a := newTestFSM(t, dir, "a.db")
	cmds := []*Command{
		{ClientID: "c", Seq: 1, Time: 10, Op: &Mkdir{Parent: RootIno, Name: "vol", Mode: 0o755}},
		{ClientID: "c", Seq: 2, Time: 11, Op: &SetQuota{Ino: 2, MaxBytes: 1 << 20}},
		{ClientID: "c", Seq: 3, Time: 12, Op: &Create{Parent: 2, Name: "f", Mode: 0o644}},
		{ClientID: "c", Seq: 4, Time: 13, Op: &CommitSlices{Ino: 3, Slices: []Slice{{Off: 0, Len: 10, Fid: "1,0100000001"}}}},
		{ClientID: "d", Seq: 1, Time: 14, Op: &Snapshot{SrcIno: 2, Name: "s"}},
		{ClientID: "d", Seq: 2, Time: 15, Op: &SetAttr{Ino: 3, Valid: SetSize, Size: 0}},
		{ClientID: "d", Seq: 3, Time: 16, Op: &SetXattr{Ino: 3, Name: "user.k", Value: []byte("v")}},
	}
	for i, c := range cmds {
		if r := fsmApply(t, a, uint64(i+1), c); r.Errno != 0 {
			t.Fatalf("command %d: %v", i, r.Errno)
		}
	}
	if r := a.Apply(&raft.Log{Index: 8, Type: raft.LogCommand, Data: []byte("garbage")}); r == nil {
		t.Fatal("garbage command accepted")
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v", err)
	}
	snap.Release()

	b := newTestFSM(t, dir, "b.db")
	fsmApply(t, b, 1, &Command{Time: 1, Op: &Mkdir{Parent: RootIno, Name: "junk"}})
	if err := b.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if dumpOf(t, a.State()) != dumpOf(t, b.State()) {
		t.Fatal("restored state differs")
	}
	if b.State().ApplyIndex() != 8 {
		t.Fatalf("apply index %d after restore", b.State().ApplyIndex())
	}
	// Both continue identically, including the replay of a known command.
	more := []*Command{cmds[6], {ClientID: "d", Seq: 4, Time: 17, Op: &Rename{OldParent: 2, OldName: "f", NewParent: RootIno, NewName: "g"}}}
	for i, c := range more {
		ra, rb := fsmApply(t, a, uint64(9+i), c), fsmApply(t, b, uint64(9+i), c)
		if !sameResult(ra, rb) {
			t.Fatalf("results differ: %+v vs %+v", ra, rb)
		}
	}
	if dumpOf(t, a.State()) != dumpOf(t, b.State()) {
		t.Fatal("states differ after more commands")
	}
	for _, f := range []*FSM{a, b} {
		if err := f.State().Check(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Restore(io.NopCloser(bytes.NewReader([]byte("not a db")))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
	if dumpOf(t, a.State()) != dumpOf(t, b.State()) {
		t.Fatal("failed restore changed the state")
	}
}

// TestFSMProposedCommand: the leader's FSM applies the command it proposed
// without decoding the log entry again, and ends in the same state as a
// member that decodes every entry; a proposal whose call already returned
// is decoded like any entry.
func TestFSMProposedCommand(t *testing.T) {
	dir := t.TempDir()
	leader := newTestFSM(t, dir, "leader.db")
	follower := newTestFSM(t, dir, "follower.db")
	page := bytes.Repeat([]byte("p"), 4096)
	client := []*Command{
		{ClientID: "m", Seq: 1, Op: &Create{Parent: RootIno, Name: "f", Mode: 0o644}},
		{ClientID: "m", Seq: 2, Op: &CommitSlices{Ino: 2, Inline: []InlineData{{Off: 8192, Data: page}}, Size: 12288, OmitSlices: true}},
		{ClientID: "m", Seq: 3, Op: &Mkdir{Parent: RootIno, Name: "d", Mode: 0o755}},
		{ClientID: "m", Seq: 3, Op: &Mkdir{Parent: RootIno, Name: "d", Mode: 0o755}}, // a retry
		{ClientID: "m", Seq: 4, Op: &Rmdir{Parent: RootIno, Name: "nothing"}},        // refused
	}
	var fid string
	for i, c := range client {
		// As the filer's Apply handler: decode what the client sent, stamp
		// the time, encode the log entry and propose it.
		sent, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := DecodeCommand(sent)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Time = int64(100 + i)
		entry, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		index := uint64(i + 1)
		done := leader.Proposal(entry, cmd)
		rl := leader.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: entry})
		done()
		rf := follower.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: append([]byte(nil), entry...)})
		if !sameResult(rl.(*Result), rf.(*Result)) {
			t.Fatalf("command %d: leader %+v, follower %+v", i, rl, rf)
		}
		if i == 1 {
			fid = rl.(*Result).Fids[0]
		}
	}
	if dumpOf(t, leader.State()) != dumpOf(t, follower.State()) {
		t.Fatal("leader and follower states differ")
	}
	if b, err := leader.State().ReadInline(fid, 0, 4096); err != nil || !bytes.Equal(b, page) {
		t.Fatalf("inline data on the leader: %v", err)
	}

	// The proposed command is the one applied (the bytes are not decoded).
	entry, _ := (&Command{Time: 200, Op: &Mkdir{Parent: RootIno, Name: "encoded"}}).Encode()
	done := leader.Proposal(entry, &Command{Time: 200, Op: &Mkdir{Parent: RootIno, Name: "proposed"}})
	leader.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: entry})
	done()
	// A proposal whose call returned before the entry was applied: decoded.
	entry2, _ := (&Command{Time: 201, Op: &Mkdir{Parent: RootIno, Name: "late"}}).Encode()
	leader.Proposal(entry2, &Command{Time: 201, Op: &Mkdir{Parent: RootIno, Name: "gone"}})()
	leader.Apply(&raft.Log{Index: 11, Type: raft.LogCommand, Data: entry2})
	for name, want := range map[string]bool{"proposed": true, "encoded": false, "late": true, "gone": false} {
		_, err := leader.State().Lookup(RootIno, name)
		if (err == nil) != want {
			t.Errorf("lookup %q: %v, want found %v", name, err, want)
		}
	}
}
