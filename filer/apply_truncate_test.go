package filer

import (
	"path/filepath"
	"testing"
)

// TestCommitSlicesTruncate checks the whole-file replacement the HTTP API
// uses: old slices are dropped (and queued for deletion once unreferenced),
// the size is exactly the new content's, and quota usage follows.
func TestCommitSlicesTruncate(t *testing.T) {
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
		return r
	}
	f := apply(&Create{Parent: RootIno, Name: "f", Mode: 0o644}).Inode.Ino
	apply(&CommitSlices{Ino: f, Slices: []Slice{{Off: 0, Len: 100, Fid: "1,0100000001"}, {Off: 100, Len: 50, Fid: "1,0200000002"}}})
	r := apply(&CommitSlices{Ino: f, Slices: []Slice{{Off: 0, Len: 10, Fid: "1,0200000002"}, {Off: 10, Len: 5, Fid: "1,0300000003"}}, Size: 15, Truncate: true})
	if r.Errno != 0 || r.Inode.Size != 15 || len(r.Inode.Slices) != 2 {
		t.Fatalf("truncating commit: %+v", r)
	}
	if n, _ := st.RefCount("1,0200000002"); n != 1 {
		t.Fatalf("fid shared by old and new slices has refcount %d, want 1", n)
	}
	q, _ := st.PendingDeletes(10)
	if len(q) != 1 || q[0] != "1,0100000001" {
		t.Fatalf("delete queue %v, want [1,0100000001]", q)
	}
	sf, _ := st.Statfs(f)
	if sf.Bytes != 15 {
		t.Fatalf("quota usage %d bytes, want 15", sf.Bytes)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}
