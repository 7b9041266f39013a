package shell

import (
	"strings"
	"testing"
)

func TestFsLs(t *testing.T) {
	fresh(t, "/ls")
	putFile(t, "/ls/b.txt", []byte("bbb"))
	putFile(t, "/ls/a.txt", []byte("a"))
	putFile(t, "/ls/sub/c", []byte("c"))
	var es []EntryJSON
	mustJSON(t, &es, "fs.ls -l /ls")
	if len(es) != 3 || es[0].Name != "a.txt" || es[1].Name != "b.txt" || es[2].Name != "sub" {
		t.Fatalf("entries: %+v", es)
	}
	if es[1].Type != "file" || es[1].Size != 3 || es[2].Type != "dir" || !strings.HasPrefix(es[2].Mode, "d") || es[0].Mtime == 0 {
		t.Fatalf("long entries: %+v", es)
	}
	if out := mustRun(t, "-c", "fs.ls ls/"); out != "a.txt\nb.txt\nsub/\n" {
		t.Fatalf("short listing (relative path): %q", out)
	}
	if out := mustRun(t, "-c", "fs.ls /ls/a.txt -l"); !strings.Contains(out, "-rw") || !strings.Contains(out, "/ls/a.txt") {
		t.Fatalf("listing a file: %q", out)
	}
	_, errs, code := runShell(t, "-c", "fs.ls /ls/nope")
	if code != 1 || !strings.Contains(errs, "/ls/nope: no such file or directory") || !strings.Contains(errs, "fs.ls /ls") {
		t.Fatalf("missing path: exit %d %q", code, errs)
	}
}
