package shell

import (
	"strings"
	"testing"
)

func TestFsTree(t *testing.T) {
	fresh(t, "/tree")
	putFile(t, "/tree/x/y/z", []byte("z"))
	putFile(t, "/tree/a", []byte("a"))
	out := mustRun(t, "-c", "fs.tree /tree")
	want := "/tree\n├── a\n└── x/\n    └── y/\n        └── z\n\n2 directories, 2 files\n"
	if out != want {
		t.Fatalf("tree:\n%s\nwant:\n%s", out, want)
	}
	var root EntryJSON
	mustJSON(t, &root, "fs.tree -depth 1 /tree")
	if len(root.Children) != 2 || root.Children[1].Name != "x" || len(root.Children[1].Children) != 0 {
		t.Fatalf("depth 1: %+v", root)
	}
	if out := mustRun(t, "-c", "fs.tree /tree/a"); !strings.HasPrefix(out, "/tree/a\n") {
		t.Fatalf("tree of a file: %q", out)
	}
}
