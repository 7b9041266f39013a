package shell

import (
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

func TestFsDu(t *testing.T) {
	fresh(t, "/du")
	putFile(t, "/du/a", make([]byte, 1000))
	putFile(t, "/du/d/b", make([]byte, 200))
	putFile(t, "/du/d/e/c", make([]byte, 30))
	// A hard link is counted once.
	fc := filerClient(t)
	ctx := t.Context()
	c, err := fc.Resolve(ctx, "/du/d/e/c")
	if err != nil {
		t.Fatal(err)
	}
	d, err := fc.Resolve(ctx, "/du/d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Apply(ctx, &filer.Link{Ino: c.Ino, NewParent: d.Ino, NewName: "link"}); err != nil {
		t.Fatal(err)
	}
	var du DuOutputJSON
	mustJSON(t, &du, "fs.du /du")
	if du.Total.Bytes != 1230 || du.Total.Inodes != 6 {
		t.Fatalf("total %+v, want 1230 bytes and 6 inodes (/du, a, d, b, e, c)", du.Total)
	}
	if len(du.Entries) != 2 || du.Entries[0].Path != "/du/a" || du.Entries[0].Bytes != 1000 || du.Entries[1].Bytes != 230 || du.Entries[1].Inodes != 4 {
		t.Fatalf("entries %+v", du.Entries)
	}
	if out := mustRun(t, "-c", "fs.du /du/a"); !strings.Contains(out, "1000") || !strings.Contains(out, "/du/a") {
		t.Fatalf("du of a file: %q", out)
	}
}
