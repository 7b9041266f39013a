package fuse

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The mount's series move with what applications do.
func TestMountMetricsMove(t *testing.T) {
	_, dir := shared(t)
	op := func(name, result string) float64 { return metricValue(mountOps.WithLabelValues(name, result)) }
	writesBefore, fsyncsBefore := op(opWrite, "ok"), op(opFsync, "ok")
	missingBefore := op(opLookup, "ENOENT")
	latencyBefore := metricValue(mountOpSeconds)
	missesBefore := metricValue(mountCacheMisses)

	path := filepath.Join(dir, "m.dat")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := randBytes(300000, 5)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(mountDirties); got < float64(len(data)) {
		t.Fatalf("cairn_mount_dirty_bytes is %v after buffering %d bytes", got, len(data))
	}
	dirty := sharedMount.fs.dirtyBytes.Load()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if d := sharedMount.fs.dirtyBytes.Load(); dirty-d < int64(len(data)) {
		t.Fatalf("fsync of %d buffered bytes took the mount's dirty count from %d to %d", len(data), dirty, d)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat of a missing file: %v", err)
	}
	// A cold read (the kernel's cache of the file dropped) goes to the
	// chunk cache, which has to fetch.
	sharedMount.fs.invalidate(sharedMount.fs.filerInoOf(t, path), 0)
	if got := mustRead(t, path); len(got) != len(data) {
		t.Fatalf("read %d bytes, want %d", len(got), len(data))
	}

	if op(opWrite, "ok") <= writesBefore {
		t.Error("cairn_mount_ops_total{op=write,result=ok} did not move")
	}
	if op(opFsync, "ok") <= fsyncsBefore {
		t.Error("cairn_mount_ops_total{op=fsync,result=ok} did not move")
	}
	if op(opLookup, "ENOENT") <= missingBefore {
		t.Error("cairn_mount_ops_total{op=lookup,result=ENOENT} did not move")
	}
	if metricValue(mountOpSeconds) <= latencyBefore {
		t.Error("cairn_mount_op_duration_seconds has no new observations")
	}
	if metricValue(mountCacheMisses) <= missesBefore {
		t.Error("cairn_mount_cache_misses_total did not move on a cold read")
	}
}

// filerInoOf returns the filer inode number of path (in this mount).
func (fs *fileSystem) filerInoOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fs.filerIno(st.Ino)
}

// A file this mount created is known to have no security.capability, so
// the kernel's query before each write is answered without the filer; a
// file that existed before is asked for.
func TestCreatedFileHasNoCaps(t *testing.T) {
	_, dir := shared(t)
	path := filepath.Join(dir, "newcaps.dat")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	ino := sharedMount.fs.filerInoOf(t, path)
	if !sharedMount.fs.noCaps.known(ino) {
		t.Error("a file just created by this mount is not known to have no capabilities")
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sharedMount.fs.noCaps.forget(ino)
	f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644) // exists: not created
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if sharedMount.fs.noCaps.known(ino) {
		t.Error("opening an existing file with O_CREAT marked it as having no capabilities without asking")
	}
}
