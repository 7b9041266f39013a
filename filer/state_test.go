package filer

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
)

// testState is a State for one test; Check runs when the test ends.
type testState struct {
	*State
	t   testing.TB
	now int64
	// mirror, when set, gets every command too, each committed before the
	// next (the state under test keeps its transactions open until a read);
	// commands then carry log indexes and a client session, and now and
	// then arrive twice.
	mirror   *State
	index    uint64
	seq      uint64
	dupEvery int // with a mirror: 1 in dupEvery commands is applied twice
}

func newTestState(t testing.TB) *testState {
	t.Helper()
	st, err := OpenState(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testState{State: st, t: t, now: 1_000_000_000}
	t.Cleanup(func() {
		if err := st.Check(); err != nil {
			t.Errorf("state check at end of test: %v", err)
		}
		st.Close()
	})
	return ts
}

// do applies op with a fresh command time and no client session.
func (s *testState) do(op Op) *Result {
	s.t.Helper()
	s.now += 1000
	if s.mirror != nil {
		s.seq++
		r := s.doMirrored(&Command{ClientID: "model", Seq: s.seq, Time: s.now, Op: op})
		if s.dupEvery > 0 && s.seq%uint64(s.dupEvery) == 0 {
			again := s.doMirrored(&Command{ClientID: "model", Seq: s.seq, Time: s.now + 1, Op: op})
			if a, b := mustJSON(s.t, r), mustJSON(s.t, again); a != b {
				s.t.Fatalf("%s applied again: %s, first %s", op.OpType(), b, a)
			}
		}
		return r
	}
	r, err := s.Apply(0, &Command{Time: s.now, Op: op})
	if err != nil {
		s.t.Fatalf("apply %s: %v", op.OpType(), err)
	}
	return r
}

// doMirrored applies c as the next log entry to the state and to its
// mirror, each from its own decoding of c, commits the mirror's
// transaction, and checks that both gave the same result.
func (s *testState) doMirrored(c *Command) *Result {
	s.t.Helper()
	b, err := c.Encode()
	if err != nil {
		s.t.Fatal(err)
	}
	s.index++
	var res [2]*Result
	for i, st := range []*State{s.State, s.mirror} {
		dc, err := DecodeCommand(b)
		if err != nil {
			s.t.Fatal(err)
		}
		if res[i], err = st.Apply(s.index, dc); err != nil {
			s.t.Fatalf("apply %s: %v", c.Op.OpType(), err)
		}
	}
	if err := s.mirror.view(func(*txn) error { return nil }); err != nil {
		s.t.Fatal(err)
	}
	if a, b := mustJSON(s.t, res[0]), mustJSON(s.t, res[1]); a != b {
		s.t.Fatalf("%s at index %d: %s, committed each time %s", c.Op.OpType(), s.index, a, b)
	}
	return res[0]
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	s, err := jsonString(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ok applies op and fails the test unless it succeeds.
func (s *testState) ok(op Op) *Result {
	s.t.Helper()
	r := s.do(op)
	if r.Errno != 0 {
		s.t.Fatalf("%s %+v: %v", op.OpType(), op, r.Errno)
	}
	return r
}

func (s *testState) fails(op Op, want syscall.Errno) {
	s.t.Helper()
	if r := s.do(op); r.Errno != want {
		s.t.Fatalf("%s %+v: errno %v, want %v", op.OpType(), op, r.Errno, want)
	}
}

func (s *testState) dump() string {
	s.t.Helper()
	var b bytes.Buffer
	if err := s.Dump(&b); err != nil {
		s.t.Fatal(err)
	}
	return b.String()
}

func (s *testState) mustCheck() {
	s.t.Helper()
	if err := s.Check(); err != nil {
		s.t.Fatal(err)
	}
}

func TestBasicNamespace(t *testing.T) {
	s := newTestState(t)
	d := s.ok(&Mkdir{Parent: RootIno, Name: "d", Mode: 0o755}).Inode
	f := s.ok(&Create{Parent: d.Ino, Name: "f", Mode: 0o644, Excl: true}).Inode
	s.fails(&Create{Parent: d.Ino, Name: "f", Excl: true}, syscall.EEXIST)
	if r := s.ok(&Create{Parent: d.Ino, Name: "f"}); r.Inode.Ino != f.Ino {
		t.Fatalf("non-exclusive create returned %d, want existing %d", r.Inode.Ino, f.Ino)
	}
	s.fails(&Create{Parent: RootIno, Name: "d"}, syscall.EISDIR)
	s.fails(&Mkdir{Parent: f.Ino, Name: "x"}, syscall.ENOTDIR)
	s.fails(&Mkdir{Parent: RootIno, Name: string(make([]byte, 256))}, syscall.ENAMETOOLONG)
	s.fails(&Mkdir{Parent: RootIno, Name: "a/b"}, syscall.EINVAL)
	s.fails(&Link{Ino: d.Ino, NewParent: RootIno, NewName: "dl"}, syscall.EPERM)
	s.ok(&Link{Ino: f.Ino, NewParent: RootIno, NewName: "fl"})
	s.fails(&Rmdir{Parent: RootIno, Name: "d"}, syscall.ENOTEMPTY)
	s.fails(&Rename{OldParent: RootIno, OldName: "d", NewParent: d.Ino, NewName: "x"}, syscall.EINVAL)
	s.fails(&Rename{OldParent: RootIno, OldName: "fl", NewParent: RootIno, NewName: "d"}, syscall.EISDIR)
	s.ok(&Rename{OldParent: RootIno, OldName: "fl", NewParent: d.Ino, NewName: "f"}) // same inode: no-op
	s.ok(&Symlink{Parent: RootIno, Name: "l", Target: "d/f"})
	in, err := s.Resolve("/d/f")
	if err != nil || in.Ino != f.Ino || in.Nlink != 2 {
		t.Fatalf("resolve /d/f: %+v, %v", in, err)
	}
	if tgt, err := s.Readlink(in.Ino + 1); err != nil || tgt != "d/f" {
		t.Fatalf("readlink: %q, %v", tgt, err)
	}
	if _, err := s.Resolve("/l/f"); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("resolve through symlink: %v", err)
	}
	s.ok(&Unlink{Parent: RootIno, Name: "fl"})
	s.ok(&Unlink{Parent: d.Ino, Name: "f"})
	s.ok(&Rmdir{Parent: RootIno, Name: "d"})
	if _, err := s.GetAttr(f.Ino); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("getattr of removed file: %v", err)
	}
	root, _ := s.GetAttr(RootIno)
	if root.Nlink != 2 {
		t.Fatalf("root nlink %d after rmdir", root.Nlink)
	}
}

func TestReadDirCursor(t *testing.T) {
	s := newTestState(t)
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		s.ok(&Create{Parent: RootIno, Name: n})
	}
	got, err := s.ReadDir(RootIno, "", 2)
	if err != nil || len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("first page %+v, %v", got, err)
	}
	s.ok(&Unlink{Parent: RootIno, Name: "b"})
	s.ok(&Create{Parent: RootIno, Name: "bb"})
	s.ok(&Unlink{Parent: RootIno, Name: "c"})
	got, _ = s.ReadDir(RootIno, "b", 0)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	if want := "bb d e"; joinNames(names) != want {
		t.Fatalf("after cursor b: %q, want %q", joinNames(names), want)
	}
}

func joinNames(n []string) string {
	var b bytes.Buffer
	for i, s := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

func TestDataOps(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 100, Fid: "3,01637037d6"}}})
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 10, Len: 10, Fid: "3,02637037d6"}}})
	s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 15})
	in := s.ok(&SetAttr{Ino: f.Ino, Valid: SetSize, Size: 50}).Inode
	want := []Extent{{Off: 0, Len: 10, Fid: "3,01637037d6"}, {Off: 10, Len: 5, Fid: "3,02637037d6"}, {Off: 15, Len: 35}}
	if got := VisibleExtents(in.Slices, 0, in.Size); !equalExtents(got, want) {
		t.Fatalf("after shrink and grow: %+v, want %+v", got, want)
	}
	in = s.ok(&PunchHole{Ino: f.Ino, Off: 5, Len: 1000}).Inode
	if in.Size != 50 {
		t.Fatalf("punch changed size to %d", in.Size)
	}
	q, _ := s.PendingDeletes(0)
	if len(q) != 1 || q[0] != "3,02637037d6" {
		t.Fatalf("delete queue %v", q)
	}
	s.fails(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 1, Fid: "3,02637037d6"}}}, syscall.ESTALE)
	s.fails(&ReplaceSlices{Ino: f.Ino, ExpectGeneration: in.Generation - 1}, syscall.EAGAIN)
	in = s.ok(&ReplaceSlices{Ino: f.Ino, ExpectGeneration: in.Generation, NewSlices: []Slice{{Off: 0, Len: 5, Fid: "4,01637037d6"}}}).Inode
	if got := VisibleExtents(in.Slices, 0, in.Size); !equalExtents(got, []Extent{{Off: 0, Len: 5, Fid: "4,01637037d6"}, {Off: 5, Len: 45}}) {
		t.Fatalf("after replace: %+v", got)
	}
	in = s.ok(&Fallocate{Ino: f.Ino, Off: 40, Len: 60}).Inode
	if in.Size != 100 {
		t.Fatalf("fallocate size %d", in.Size)
	}
	s.fails(&Fallocate{Ino: f.Ino, Off: 0, Len: 1, Mode: 0x10}, syscall.EOPNOTSUPP)
	s.ok(&SetXattr{Ino: f.Ino, Name: "user.a", Value: []byte("1"), Flags: XattrCreate})
	s.fails(&SetXattr{Ino: f.Ino, Name: "user.a", Value: []byte("2"), Flags: XattrCreate}, syscall.EEXIST)
	s.fails(&SetXattr{Ino: f.Ino, Name: "user.b", Flags: XattrReplace}, syscall.ENODATA)
	s.fails(&RemoveXattr{Ino: f.Ino, Name: "user.b"}, syscall.ENODATA)
	if v, err := s.GetXattr(f.Ino, "user.a"); err != nil || string(v) != "1" {
		t.Fatalf("getxattr %q %v", v, err)
	}
	s.ok(&DequeueDeleted{Fids: q})
	if q, _ := s.PendingDeletes(0); len(q) != 1 || q[0] != "3,01637037d6" { // dropped by ReplaceSlices
		t.Fatalf("queue after dequeue: %v", q)
	}
}

func equalExtents(a, b []Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUnlinkWhileOpen(t *testing.T) {
	s := newTestState(t)
	f := s.ok(&Create{Parent: RootIno, Name: "f"}).Inode
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 0, Len: 10, Fid: "3,01637037d6"}}})
	s.ok(&Unlink{Parent: RootIno, Name: "f", KeepIfOpen: true})
	if in, err := s.GetAttr(f.Ino); err != nil || in.Nlink != 0 || in.Size != 10 {
		t.Fatalf("orphan: %+v %v", in, err)
	}
	s.ok(&CommitSlices{Ino: f.Ino, Slices: []Slice{{Off: 10, Len: 10, Fid: "3,02637037d6"}}})
	s.fails(&Link{Ino: f.Ino, NewParent: RootIno, NewName: "g"}, syscall.ENOENT)
	s.mustCheck()
	s.ok(&ReleaseOrphan{Ino: f.Ino})
	s.fails(&ReleaseOrphan{Ino: f.Ino}, syscall.ENOENT)
	if q, _ := s.PendingDeletes(0); len(q) != 2 {
		t.Fatalf("queue %v", q)
	}
}

func TestIdempotentReplay(t *testing.T) {
	s := newTestState(t)
	cmds := []*Command{
		{ClientID: "c1", Seq: 1, Time: 5, Op: &Mkdir{Parent: RootIno, Name: "d"}},
		{ClientID: "c1", Seq: 2, Time: 6, Op: &Create{Parent: 2, Name: "f", Excl: true}},
		{ClientID: "c1", Seq: 3, Time: 7, Op: &Mkdir{Parent: RootIno, Name: "d"}}, // EEXIST
		{ClientID: "c2", Seq: 1, Time: 8, Op: &Unlink{Parent: 2, Name: "f"}},
	}
	for i, c := range cmds {
		first, err := s.Apply(uint64(2*i+1), c)
		if err != nil {
			t.Fatal(err)
		}
		before := s.dump()
		again, err := s.Apply(uint64(2*i+2), c)
		if err != nil {
			t.Fatal(err)
		}
		if !sameResult(first, again) {
			t.Fatalf("command %d: replay gave %+v, first %+v", i, again, first)
		}
		after := s.dump()
		// Only the apply index may differ.
		if stripIndex(before) != stripIndex(after) {
			t.Fatalf("command %d: replay changed the state", i)
		}
		if s.ApplyIndex() != uint64(2*i+2) {
			t.Fatalf("apply index %d", s.ApplyIndex())
		}
	}
	if r, _ := s.Apply(0, &Command{ClientID: "c1", Seq: 1, Op: &Mkdir{Parent: RootIno, Name: "z"}}); r.Errno != syscall.ESTALE {
		t.Fatalf("old seq: %v", r.Errno)
	}
	if _, err := s.Lookup(RootIno, "z"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("old seq was applied: %v", err)
	}
}

func sameResult(a, b *Result) bool {
	ja, _ := jsonString(a)
	jb, _ := jsonString(b)
	return ja == jb
}

func stripIndex(dump string) string {
	var out bytes.Buffer
	for line := range bytes.SplitSeq([]byte(dump), []byte("\n")) {
		if bytes.HasPrefix(line, []byte("meta "+hexString(metaApplyIndex))) {
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.String()
}

// Attr and LookupAttr answer what GetAttr and Lookup do, without the slice
// list.
func TestAttrWithoutSlices(t *testing.T) {
	st := newTestState(t)
	ino := st.ok(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
	for i := range 10 {
		st.ok(&CommitSlices{Ino: ino, Slices: []Slice{{Off: uint64(i) * 8192, Len: 4096, Fid: fmt.Sprintf("3,%x00000001", i+1)}}})
	}
	full, err := st.GetAttr(ino)
	if err != nil || len(full.Slices) != 10 {
		t.Fatalf("GetAttr: %d slices, %v", len(full.Slices), err)
	}
	for what, get := range map[string]func() (*Inode, error){
		"Attr":       func() (*Inode, error) { return st.Attr(ino) },
		"LookupAttr": func() (*Inode, error) { return st.LookupAttr(RootIno, "f") },
	} {
		in, err := get()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if in.Slices != nil || in.Ino != ino || in.Size != full.Size || in.Generation != full.Generation || in.Mtime != full.Mtime {
			t.Fatalf("%s = %+v, want the attributes of %+v without slices", what, in, full)
		}
	}
	if _, err := st.Attr(12345); err != syscall.ENOENT {
		t.Fatalf("Attr of a missing inode: %v", err)
	}
	if _, err := st.LookupAttr(RootIno, "missing"); err != syscall.ENOENT {
		t.Fatalf("LookupAttr of a missing name: %v", err)
	}
}

// TestCreateTmp: a file made with O_TMPFILE is an orphan in no directory,
// charged to its directory's quota root; Link gives it a name and takes
// it off the orphan list, once; one never linked is freed by
// ReleaseOrphan. A file unlinked while open still cannot be linked.
func TestCreateTmp(t *testing.T) {
	s := newTestState(t)
	d := s.ok(&Mkdir{Parent: RootIno, Name: "d", Mode: 0o755}).Inode
	s.ok(&SetQuota{Ino: d.Ino, MaxInodes: 3}) // d itself and two files
	tmp := s.ok(&CreateTmp{Parent: d.Ino, Mode: 0o600, Uid: 7, Gid: 8})
	in := tmp.Inode
	if !tmp.Created || in.Nlink != 0 || !in.IsRegular() || in.Mode&0o7777 != 0o600 || in.Uid != 7 || in.QuotaRoot != d.Ino {
		t.Fatalf("tmpfile %+v", tmp)
	}
	if ents, err := s.ReadDir(d.Ino, "", 0); err != nil || len(ents) != 0 {
		t.Fatalf("the tmpfile shows in its directory: %v %v", ents, err)
	}
	s.ok(&CommitSlices{Ino: in.Ino, Slices: []Slice{{Off: 0, Len: 10, Fid: "3,01637037d6"}}})
	s.mustCheck()
	linked := s.ok(&Link{Ino: in.Ino, NewParent: d.Ino, NewName: "named"}).Inode
	if linked.Nlink != 1 || linked.Size != 10 {
		t.Fatalf("linked tmpfile %+v", linked)
	}
	s.fails(&ReleaseOrphan{Ino: in.Ino}, syscall.ENOENT) // named now: its last close keeps it
	s.ok(&Link{Ino: in.Ino, NewParent: d.Ino, NewName: "again"})
	s.mustCheck()

	// Never linked: freed at its last close. The quota counts it meanwhile.
	gone := s.ok(&CreateTmp{Parent: d.Ino, Mode: 0o600}).Inode
	s.fails(&CreateTmp{Parent: d.Ino, Mode: 0o600}, syscall.EDQUOT)
	s.ok(&ReleaseOrphan{Ino: gone.Ino})
	s.ok(&CreateTmp{Parent: d.Ino, Mode: 0o600})
	s.fails(&CreateTmp{Parent: 999, Mode: 0o600}, syscall.ENOENT)
	s.fails(&CreateTmp{Parent: linked.Ino, Mode: 0o600}, syscall.ENOTDIR)

	// Unlinked while open: no name back.
	s.ok(&Unlink{Parent: d.Ino, Name: "named", KeepIfOpen: true})
	s.ok(&Unlink{Parent: d.Ino, Name: "again", KeepIfOpen: true})
	s.fails(&Link{Ino: in.Ino, NewParent: d.Ino, NewName: "back"}, syscall.ENOENT)
	s.ok(&ReleaseOrphan{Ino: in.Ino})
}
