package shell

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

func TestSnapshotDelete(t *testing.T) {
	fresh(t, "/snapdel")
	putFile(t, "/snapdel/f", []byte("s"))
	name := unique("delete-test-")
	id := takeSnapshot(t, "/snapdel", name)
	cmd := fmt.Sprintf("snapshot.delete %d", id)
	_, errs, code := runShell(t, "-c", cmd)
	if code != 1 || !strings.Contains(errs, "-y") {
		t.Fatalf("delete without -y: exit %d %q", code, errs)
	}
	if out := mustRun(t, "-y", "-c", cmd); !strings.Contains(out, "deleted snapshot") {
		t.Fatalf("delete: %q", out)
	}
	var snaps []filer.SnapshotInfo
	mustJSON(t, &snaps, "snapshot.list")
	for _, s := range snaps {
		if s.ID == id {
			t.Fatalf("snapshot %d still listed", id)
		}
	}
	_, errs, code = runShell(t, "-y", "-c", cmd)
	if code != 1 || !strings.Contains(errs, "no such snapshot") {
		t.Fatalf("delete again: exit %d %q", code, errs)
	}
	_, errs, code = runShell(t, "-y", "-c", "snapshot.delete abc")
	if code != 1 || !strings.Contains(errs, "not a snapshot id") {
		t.Fatalf("bad id: exit %d %q", code, errs)
	}
}
