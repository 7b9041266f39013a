package csi

import (
	"testing"

	"github.com/cairn-storage/cairn/internal/mountinfo"
)

func TestMountAt(t *testing.T) {
	ms := mountEntries(mountinfo.Parse([]byte(`22 1 0:21 / /proc rw,nosuid - proc proc rw
37 22 0:52 / /tmp/t rw,relatime - fuse.cairn cairn rw
38 22 0:52 / /tmp/t ro,relatime - fuse.cairn cairn rw
`)))
	if len(ms) != 3 {
		t.Fatalf("got %d entries, want 3", len(ms))
	}
	top := mountAt(ms, "/tmp/t/")
	if top == nil || top != &ms[2] || !top.readOnly() {
		t.Fatalf("mountAt(/tmp/t) = %+v, want the read-only top mount", top)
	}
	if ms[1].readOnly() {
		t.Fatalf("%+v is not read-only", ms[1])
	}
	if mountAt(ms, "/tmp") != nil {
		t.Fatal("/tmp is no mount point")
	}
}
