package csi

import "testing"

func TestParseMountinfo(t *testing.T) {
	in := []byte(`22 1 0:21 / /proc rw,nosuid - proc proc rw
36 35 0:52 / /tmp/a\040b/staging rw,nosuid,nodev,relatime shared:1 - fuse.cairn cairn rw,user_id=0,group_id=0
37 22 0:52 / /tmp/t rw,relatime - fuse.cairn cairn rw
38 22 0:52 / /tmp/t ro,relatime - fuse.cairn cairn rw
`)
	ms := parseMountinfo(in)
	if len(ms) != 4 {
		t.Fatalf("got %d entries, want 4", len(ms))
	}
	if ms[1].Point != "/tmp/a b/staging" || ms[1].FSType != "fuse.cairn" || ms[1].Dev != "0:52" {
		t.Fatalf("entry 1 = %+v", ms[1])
	}
	top := mountAt(ms, "/tmp/t/")
	if top == nil || !top.readOnly() {
		t.Fatalf("mountAt(/tmp/t) = %+v, want the read-only top mount", top)
	}
	if mountAt(ms, "/tmp") != nil {
		t.Fatal("/tmp is no mount point")
	}
}
