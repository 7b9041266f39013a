package shell

import (
	"strings"
	"testing"
)

func TestFsRm(t *testing.T) {
	fresh(t, "/rm")
	putFile(t, "/rm/f", []byte("f"))
	putFile(t, "/rm/d/x/y", []byte("y"))
	putFile(t, "/rm/d/z", []byte("z"))

	// -c without -y refuses and changes nothing.
	_, errs, code := runShell(t, "-c", "fs.rm /rm/f")
	if code != 1 || !strings.Contains(errs, "-y") || !strings.Contains(errs, "nothing was changed") {
		t.Fatalf("rm without -y: exit %d %q", code, errs)
	}
	if out := mustRun(t, "-c", "fs.ls /rm"); out != "d/\nf\n" {
		t.Fatalf("after refused rm: %q", out)
	}
	_, errs, code = runShell(t, "-y", "-c", "fs.rm /rm/d")
	if code != 1 || !strings.Contains(errs, "fs.rm -r") {
		t.Fatalf("rm of a non-empty directory: exit %d %q", code, errs)
	}
	var r RemoveJSON
	mustJSON(t, &r, "fs.rm -r /rm/d")
	if r.Removed != 4 {
		t.Fatalf("recursive rm removed %d entries, want 4 (d, x, y, z)", r.Removed)
	}
	mustRun(t, "-y", "-c", "fs.rm /rm/f")
	if out := mustRun(t, "-c", "fs.ls /rm"); out != "" {
		t.Fatalf("after rm: %q", out)
	}
	_, errs, code = runShell(t, "-y", "-c", "fs.rm -r /")
	if code != 1 || !strings.Contains(errs, "root") {
		t.Fatalf("rm of the root: exit %d %q", code, errs)
	}
}
