package shell

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/filer"
)

func TestFsCat(t *testing.T) {
	fresh(t, "/cat")
	data := make([]byte, 100000)
	rand.Read(data)
	putFile(t, "/cat/f", data)
	if out := mustRun(t, "-c", "fs.cat /cat/f"); out != string(data) {
		t.Fatalf("cat returned %d bytes, want the %d written", len(out), len(data))
	}
	// Extending the file leaves a hole that reads as zeros.
	fc := filerClient(t)
	in, err := fc.Resolve(t.Context(), "/cat/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Apply(t.Context(), &filer.SetAttr{Ino: in.Ino, Valid: filer.SetSize, Size: uint64(len(data) + 5000)}); err != nil {
		t.Fatal(err)
	}
	var got CatJSON
	mustJSON(t, &got, "fs.cat /cat/f")
	want := append(append([]byte{}, data...), make([]byte, 5000)...)
	if got.Path != "/cat/f" || got.Size != uint64(len(want)) || !bytes.Equal(got.Data, want) {
		t.Fatalf("JSON cat: path %q size %d, %d bytes (equal %v)", got.Path, got.Size, len(got.Data), bytes.Equal(got.Data, want))
	}
	_, errs, code := runShell(t, "-c", "fs.cat /cat")
	if code != 1 || !strings.Contains(errs, "not a regular file") {
		t.Fatalf("cat of a directory: exit %d %q", code, errs)
	}
}
