// Package vfstest is a conformance suite for vfs.FS implementations.
package vfstest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// Test runs the suite against fsys in the existing, empty directory dir.
func Test(t *testing.T, fsys vfs.FS, dir string) {
	p := func(name string) string { return filepath.Join(dir, name) }

	t.Run("WriteReadSize", func(t *testing.T) {
		f, err := fsys.OpenFile(p("a"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("world"), 10); err != nil {
			t.Fatal(err)
		}
		if n, err := f.Size(); err != nil || n != 15 {
			t.Fatalf("Size = %d, %v; want 15", n, err)
		}
		b := make([]byte, 15)
		if n, err := f.ReadAt(b, 0); n != 15 || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		if want := []byte("hello\x00\x00\x00\x00\x00world"); !bytes.Equal(b, want) {
			t.Fatalf("content %q, want %q", b, want)
		}
		if n, err := f.ReadAt(make([]byte, 4), 13); n != 2 || err != io.EOF {
			t.Fatalf("ReadAt past end = %d, %v; want 2, EOF", n, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(3); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Size(); n != 3 {
			t.Fatalf("Size after truncate = %d", n)
		}
		fi, err := fsys.Stat(p("a"))
		if err != nil || fi.Size() != 3 || fi.IsDir() {
			t.Fatalf("Stat = %v, %v", fi, err)
		}
	})

	t.Run("WritevAt", func(t *testing.T) {
		f, err := fsys.OpenFile(p("v"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("0123456789"), 0); err != nil {
			t.Fatal(err)
		}
		bufs := [][]byte{[]byte("ab"), nil, []byte("cde"), {}, []byte("f")}
		if n, err := f.WritevAt(bufs, 8); n != 6 || err != nil {
			t.Fatalf("WritevAt = %d, %v; want 6, nil", n, err)
		}
		if string(bufs[0]) != "ab" || string(bufs[2]) != "cde" || len(bufs) != 5 {
			t.Fatalf("WritevAt changed its argument: %q", bufs)
		}
		if n, err := f.WritevAt(nil, 3); n != 0 || err != nil {
			t.Fatalf("WritevAt of nothing = %d, %v", n, err)
		}
		if n, _ := f.Size(); n != 14 {
			t.Fatalf("Size = %d, want 14", n)
		}
		b := make([]byte, 14)
		if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if want := "01234567abcdef"; string(b) != want {
			t.Fatalf("content %q, want %q", b, want)
		}
	})

	t.Run("OpenErrors", func(t *testing.T) {
		if _, err := fsys.OpenFile(p("missing"), os.O_RDWR, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("open missing: %v, want ErrNotExist", err)
		}
		f, err := fsys.OpenFile(p("excl"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := fsys.OpenFile(p("excl"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("O_EXCL on existing: %v, want ErrExist", err)
		}
		if _, err := fsys.OpenFile(p("nodir/x"), os.O_CREATE|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("create in missing dir: %v, want ErrNotExist", err)
		}
		if _, err := fsys.Stat(p("missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stat missing: %v", err)
		}
	})

	t.Run("TruncFlag", func(t *testing.T) {
		writeFile(t, fsys, p("t"), "0123456789")
		f, err := fsys.OpenFile(p("t"), os.O_RDWR|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, _ := f.Size(); n != 0 {
			t.Fatalf("size after O_TRUNC = %d", n)
		}
	})

	t.Run("RenameRemoveReadDir", func(t *testing.T) {
		sub := p("sub")
		if err := fsys.MkdirAll(filepath.Join(sub, "deep"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, fsys, filepath.Join(sub, "b"), "bee")
		writeFile(t, fsys, filepath.Join(sub, "a"), "old")
		if err := fsys.Rename(filepath.Join(sub, "b"), filepath.Join(sub, "a")); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, fsys, filepath.Join(sub, "a")); got != "bee" {
			t.Fatalf("after rename over: %q", got)
		}
		names, err := fsys.ReadDir(sub)
		if err != nil || !slices.Equal(names, []string{"a", "deep"}) {
			t.Fatalf("ReadDir = %v, %v", names, err)
		}
		if err := fsys.Remove(filepath.Join(sub, "a")); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Remove(filepath.Join(sub, "a")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("second remove: %v", err)
		}
		if err := fsys.SyncDir(sub); err != nil {
			t.Fatal(err)
		}
		if fi, err := fsys.Stat(filepath.Join(sub, "deep")); err != nil || !fi.IsDir() {
			t.Fatalf("Stat dir = %v, %v", fi, err)
		}
		if n, err := fsys.FreeBytes(dir); err != nil || n == 0 {
			t.Fatalf("FreeBytes = %d, %v", n, err)
		}
	})

	t.Run("ConcurrentWriteAt", func(t *testing.T) {
		f, err := fsys.OpenFile(p("c"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if _, err := f.WriteAt(bytes.Repeat([]byte{byte('a' + i)}, 100), int64(i)*100); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		b := make([]byte, 800)
		if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		for i := range 8 {
			if b[i*100] != byte('a'+i) || b[i*100+99] != byte('a'+i) {
				t.Fatalf("block %d wrong", i)
			}
		}
	})
}

func writeFile(t *testing.T, fsys vfs.FS, name, s string) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(s), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, fsys vfs.FS, name string) string {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return string(b)
}
