package vfs_test

import (
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
