package filer

import (
	"path/filepath"
	"syscall"
	"testing"
)

// TestUploadLeases: an upload that is committed is no longer leased; one
// that never is goes to the delete queue when its lease ends, not before.
func TestUploadLeases(t *testing.T) {
	st, err := OpenState(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	apply := func(op Op) *Result {
		t.Helper()
		r, err := st.Apply(0, &Command{Time: 1, Op: op})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Check(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	const kept, lost = "1,0100000001", "1,0200000002"
	if r := apply(&BeginUpload{Fids: []string{kept, lost}, Expires: 100}); r.Errno != 0 {
		t.Fatal(r.Errno)
	}
	f := apply(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
	apply(&CommitSlices{Ino: f, Slices: []Slice{{Len: 10, Fid: kept}}})
	if r := apply(&BeginUpload{Fids: []string{kept}, Expires: 100}); r.Errno != syscall.EINVAL {
		t.Fatalf("leasing a referenced fid: errno %v, want EINVAL", r.Errno)
	}
	apply(&ExpireUploads{Before: 50})
	if q, _ := st.PendingDeletes(0); len(q) != 0 {
		t.Fatalf("upload queued before its lease ended: %v", q)
	}
	if n, _ := st.ExpiredUploads(101); n != 1 {
		t.Fatalf("%d expired uploads, want 1", n)
	}
	apply(&ExpireUploads{Before: 101})
	q, _ := st.PendingDeletes(0)
	if len(q) != 1 || q[0] != lost {
		t.Fatalf("delete queue %v, want [%s]", q, lost)
	}
	if n, _ := st.RefCount(kept); n != 1 {
		t.Fatalf("committed needle refcount %d", n)
	}
}

// TestSessionExpiry: an idle session is dropped; a fresh one is kept and
// still answers a retry with its stored result.
func TestSessionExpiry(t *testing.T) {
	st, err := OpenState(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := &Command{ClientID: "old", Seq: 1, Time: 100, Op: &Mkdir{Parent: RootIno, Name: "a", Mode: 0o755}}
	fresh := &Command{ClientID: "fresh", Seq: 1, Time: 1000, Op: &Mkdir{Parent: RootIno, Name: "b", Mode: 0o755}}
	for _, c := range []*Command{old, fresh} {
		if _, err := st.Apply(0, c); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := st.StaleSessions(500); n != 1 {
		t.Fatalf("%d stale sessions, want 1", n)
	}
	if _, err := st.Apply(0, &Command{Time: 2000, Op: &ExpireSessions{Before: 500}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.StaleSessions(500); n != 0 {
		t.Fatalf("%d stale sessions after expiry", n)
	}
	r, err := st.Apply(0, fresh)
	if err != nil || r.Errno != 0 || r.Inode == nil || r.Inode.Ino == 0 {
		t.Fatalf("retry of the kept session: %+v %v, want its stored result", r, err)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}
