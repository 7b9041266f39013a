package shell

import (
	"strings"
	"testing"
)

func TestFsMv(t *testing.T) {
	fresh(t, "/mv")
	putFile(t, "/mv/a", []byte("a"))
	putFile(t, "/mv/dir/keep", []byte("k"))
	var m MoveJSON
	mustJSON(t, &m, "fs.mv /mv/a /mv/b")
	if m.From != "/mv/a" || m.To != "/mv/b" || m.Ino == 0 {
		t.Fatalf("move: %+v", m)
	}
	// Into an existing directory.
	if out := mustRun(t, "-c", "fs.mv /mv/b /mv/dir"); !strings.Contains(out, "moved /mv/b to /mv/dir/b") {
		t.Fatalf("move into a directory: %q", out)
	}
	if out := mustRun(t, "-c", "fs.ls /mv/dir"); out != "b\nkeep\n" {
		t.Fatalf("after moves: %q", out)
	}
	_, errs, code := runShell(t, "-c", "fs.mv /mv/dir /mv/dir/sub")
	if code != 1 || !strings.Contains(errs, "invalid argument") {
		t.Fatalf("move into itself: exit %d %q", code, errs)
	}
	_, errs, code = runShell(t, "-c", "fs.mv /mv/nope /mv/x")
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("move of a missing file: exit %d %q", code, errs)
	}
}
