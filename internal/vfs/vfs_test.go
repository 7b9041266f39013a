package vfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/vfstest"
)

func TestOSConformance(t *testing.T) {
	vfstest.Test(t, vfs.OS, t.TempDir())
}

func TestOSErrnoWrapped(t *testing.T) {
	_, err := vfs.OS.OpenFile(filepath.Join(t.TempDir(), "missing"), os.O_RDWR, 0)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("open missing: %v, want ENOENT", err)
	}
	if _, err := vfs.OS.OpenFile(filepath.Join(t.TempDir(), "x"), os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o644); !errors.Is(err, vfs.ErrUnsupportedFlag) {
		t.Fatalf("O_APPEND: %v", err)
	}
}

func TestOSFreeBytes(t *testing.T) {
	n, err := vfs.OS.FreeBytes(t.TempDir())
	if err != nil || n == 0 {
		t.Fatalf("FreeBytes = %d, %v", n, err)
	}
	if _, err := vfs.OS.FreeBytes(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("FreeBytes of missing dir: %v", err)
	}
}

func TestOSSyncAfterCloseFails(t *testing.T) {
	f, err := vfs.OS.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := f.Sync(); err == nil {
		t.Fatal("Sync after Close succeeded")
	}
}

// More buffers than one pwritev takes, some empty, land in order.
func TestOSWritevAtManyBuffers(t *testing.T) {
	f, err := vfs.OS.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var want []byte
	for i := range 2500 {
		b := bytes.Repeat([]byte{byte(i)}, i%7)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	if n, err := f.WritevAt(bufs, 5); n != len(want) || err != nil {
		t.Fatalf("WritevAt = %d, %v; want %d", n, err, len(want))
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 5); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs from the buffers written")
	}
}

func TestOSWritevAtErrnoWrapped(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.OS.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WritevAt([][]byte{[]byte("x")}, 0); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("WritevAt on a read-only file: %v, want EBADF", err)
	}
}
