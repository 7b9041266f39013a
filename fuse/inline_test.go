package fuse

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestInlineSmallFsync: a small write followed by fsync is committed with
// its bytes to the filer, durable with the Raft log alone: it succeeds
// while the volume servers are down, and reads back from another mount
// (which has none of it cached) and from the filer. A large write still
// needs the volume servers: its fsync fails with EIO while they are down,
// keeps failing, and stores everything once they are back.
func TestInlineSmallFsync(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "inline.wal")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, 0, 1<<20)
	write := func(b []byte, off int64) {
		t.Helper()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		if end := int(off) + len(b); end > len(want) {
			want = want[:end]
		}
		copy(want[off:], b)
	}
	flushes := mountFlushes.WithLabelValues("filer")
	before := metricValue(flushes)
	write(randBytes(4096, 1), 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	write(randBytes(100, 2), 10000)
	write(randBytes(8192, 3), 3000) // two writes, one flush
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(flushes) - before; got != 2 {
		t.Fatalf("%v flushes went to the filer, want 2", got)
	}

	restart := c.volumeDown(t)
	defer restart()
	write(randBytes(5000, 4), 20000)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync of a small write with the volume servers down: %v", err)
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatal("the filer's content differs from what was written and fsynced")
	}
	write(randBytes(300000, 5), 30000)
	for range 2 {
		if err := f.Sync(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("fsync of a large write with the volume servers down: %v, want EIO", err)
		}
	}
	restart()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after the volume servers are back: %v", err)
	}

	if got := mustRead(t, c.secondMount(t, p)); !bytes.Equal(got, want) {
		t.Fatal("another mount reads other bytes than were written")
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatal("the filer's content differs from everything written")
	}
}

// TestInlineOff: with inline data turned off, a small fsync goes to the
// volume servers like any other.
func TestInlineOff(t *testing.T) {
	c, _ := shared(t)
	dir := t.TempDir()
	m := c.mount(t, Config{Root: "/", InlineLimit: -1}, dir)
	t.Cleanup(func() { _ = m.Unmount() })
	filer, volumes := mountFlushes.WithLabelValues("filer"), mountFlushes.WithLabelValues("volumes")
	fb, vb := metricValue(filer), metricValue(volumes)
	p := filepath.Join(dir, "inline-off")
	want := randBytes(3000, 6)
	mustWrite(t, p, want)
	if metricValue(filer) != fb || metricValue(volumes) == vb {
		t.Fatalf("flushes to the filer %v -> %v, to the volumes %v -> %v", fb, metricValue(filer), vb, metricValue(volumes))
	}
	if got := c.readThroughFiler(t, "/inline-off"); !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
}
