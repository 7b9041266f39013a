package shell

import (
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

// takeSnapshot snapshots directory p under name and returns its id.
func takeSnapshot(t *testing.T, p, name string) uint64 {
	t.Helper()
	fc := filerClient(t)
	in, err := fc.Resolve(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := fc.Apply(t.Context(), &filer.Snapshot{SrcIno: in.Ino, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot.ID
}

func TestSnapshotList(t *testing.T) {
	fresh(t, "/snaplist")
	putFile(t, "/snaplist/f", []byte("s"))
	name := unique("list-test-")
	id := takeSnapshot(t, "/snaplist", name)
	var snaps []filer.SnapshotInfo
	mustJSON(t, &snaps, "snapshot.list")
	found := false
	for _, s := range snaps {
		if s.ID == id {
			found = s.Name == name && s.Root != 0 && s.Time != 0
		}
	}
	if !found {
		t.Fatalf("snapshot %d not listed right: %+v", id, snaps)
	}
	if out := mustRun(t, "-c", "snapshot.list"); !strings.Contains(out, name) || !strings.Contains(out, "NAME") {
		t.Fatalf("text: %q", out)
	}
}
