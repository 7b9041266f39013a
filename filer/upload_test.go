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
