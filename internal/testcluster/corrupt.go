package testcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FindDat returns the data file of volume vid (decimal) in a volume
// server's directory.
func FindDat(t testing.TB, dir, vid string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "*"+vid+".dat"))
	for _, m := range matches {
		base := filepath.Base(m)
		if base == vid+".dat" || strings.HasSuffix(base, "_"+vid+".dat") {
			return m
		}
	}
	t.Fatalf("no data file for volume %s in %s (have %v)", vid, dir, matches)
	return ""
}

// FlipByte flips one byte in the middle of content where it is stored in
// the file at path, as a failing disk would.
func FlipByte(t testing.TB, path string, content []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(raw, content)
	if off < 0 {
		t.Fatalf("content not found in %s", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := off + len(content)/2
	if _, err := f.WriteAt([]byte{raw[at] ^ 0xff}, int64(at)); err != nil {
		t.Fatal(err)
	}
}
