package fuse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
)

// TestStickyFsyncError: when the data cannot be stored, fsync fails, keeps
// failing on retry while the servers are down, and succeeds once they are
// back, with every byte (written before and after the failure) durable.
func TestStickyFsyncError(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "sticky")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := randBytes(300000, 11)
	f.Write(first)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}

	restart := c.volumeDown(t)
	defer restart()
	second := randBytes(200000, 12)
	if _, err := f.WriteAt(second, 100000); err != nil {
		t.Fatalf("buffered write: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync with the volume server down: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second fsync with the volume server down: %v, want EIO again", err)
	}
	want := append([]byte{}, first...)
	copy(want[100000:], second)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err == nil && !bytes.Equal(got, want) {
		t.Fatal("reads while down do not show the buffered data")
	}

	restart()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after the volume server is back: %v", err)
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatal("committed content after recovery differs from everything written")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestWriterPastBoundGetsFlushError: a sequential writer past its file's
// buffer bound waits for the background flush; when that flush cannot
// store the data, the writer is told (EIO), not left waiting and not
// answered with success for bytes that cannot be buffered. Once the
// servers are back, fsync stores every byte whose write succeeded.
func TestWriterPastBoundGetsFlushError(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "past-bound")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	restart := c.volumeDown(t)
	defer restart()
	const w = 1 << 20
	// At most the bound plus one write buffered, and as much again in
	// the flush that failed: more than that must be refused.
	const most = 2 * (writerDirtyLimit + w)
	data := randBytes(most+8*w, 21)
	written := 0
	var werr error
	for written < len(data) {
		var n int
		n, werr = f.Write(data[written : written+w])
		written += n
		if werr != nil {
			break
		}
	}
	if !errors.Is(werr, syscall.EIO) {
		t.Fatalf("writing %d bytes with the volume server down: %d written, error %v; want EIO once the buffer is full", len(data), written, werr)
	}
	if written > most {
		t.Fatalf("%d bytes accepted with the volume server down, at most %d may be buffered", written, most)
	}
	restart()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after the volume server is back: %v", err)
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, data[:written]) {
		t.Fatalf("committed %d bytes, want the %d written, equal=%v", len(got), written, bytes.Equal(got, data[:written]))
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestQuotaENOSPC: writing past the quota of the mounted directory fails
// with ENOSPC at write, fsync or close, never silently; data fsynced
// before stays intact.
func TestQuotaENOSPC(t *testing.T) {
	c, _ := shared(t)
	ctx := context.Background()
	res, err := c.client.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "quota-vol", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.Apply(ctx, &filer.SetQuota{Ino: res.Inode.Ino, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	m := c.mount(t, Config{Root: "/quota-vol"}, mnt)
	defer func() {
		// The kernel releases the closed file asynchronously: if that has
		// not happened yet, unmount's final flush meets the quota again and
		// says so (and unmounts all the same).
		if err := m.Unmount(); err != nil && !errors.Is(err, syscall.EDQUOT) {
			t.Errorf("unmount: %v", err)
		}
	}()
	p := filepath.Join(mnt, "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	kept := randBytes(512<<10, 21)
	f.Write(kept)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	var failed error
	for i := 0; i < 20 && failed == nil; i++ {
		_, failed = f.Write(randBytes(1<<20, uint64(i)))
	}
	if failed == nil {
		failed = f.Sync()
	}
	if cerr := f.Close(); failed == nil {
		failed = cerr
	}
	if !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("writing 20 MiB into a 1 MiB quota: %v, want ENOSPC", failed)
	}
	in, err := c.client.Resolve(ctx, "/quota-vol/f")
	if err != nil || in.Size != uint64(len(kept)) {
		t.Fatalf("committed file after the refused writes: %+v %v", in, err)
	}
	if got := c.readThroughFiler(t, "/quota-vol/f"); !bytes.Equal(got, kept) {
		t.Fatal("data fsynced before the quota was hit changed")
	}
}

// TestUnknownHandle: a handle id this process never issued (the kernel
// kept it across a restart of the mount) is served from the inode's state
// as if the file had been reopened.
func TestUnknownHandle(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "reopen")
	mustWrite(t, p, []byte("before"))
	in, err := c.client.Resolve(context.Background(), filerPath(p))
	if err != nil {
		t.Fatal(err)
	}
	fs := sharedMount.fs
	const fh = 42 // never handed out: ids start at the clock
	hdr := gofuse.InHeader{NodeId: in.Ino}
	if n, st := fs.Write(nil, &gofuse.WriteIn{InHeader: hdr, Fh: fh, Offset: 0}, []byte("AFTER")); !st.Ok() || n != 5 {
		t.Fatalf("write through an unknown handle: %d %v", n, st)
	}
	if st := fs.Fsync(nil, &gofuse.FsyncIn{InHeader: hdr, Fh: fh}); !st.Ok() {
		t.Fatalf("fsync through an unknown handle: %v", st)
	}
	fs.Release(nil, &gofuse.ReleaseIn{InHeader: hdr, Fh: fh})
	if got := c.readThroughFiler(t, filerPath(p)); string(got) != "AFTERe" {
		t.Fatalf("committed content %q, want %q", got, "AFTERe")
	}
	if fs.lookupFile(in.Ino) != nil {
		t.Fatal("file state left after the adopted handle was released")
	}
}

// TestThroughput (CAIRN_FUSE_BENCH=1) reports dd write+fsync speed through
// the mount and to local disk.
func TestThroughput(t *testing.T) {
	if os.Getenv("CAIRN_FUSE_BENCH") == "" {
		t.Skip("set CAIRN_FUSE_BENCH=1 to measure")
	}
	_, dir := shared(t)
	for _, target := range []string{filepath.Join(dir, "dd"), filepath.Join(t.TempDir(), "dd")} {
		start := time.Now()
		out, err := exec.Command("dd", "if=/dev/zero", "of="+target, "bs=1M", "count=100", "conv=fsync").CombinedOutput()
		if err != nil {
			t.Fatalf("dd: %v %s", err, out)
		}
		d := time.Since(start)
		start = time.Now()
		out, err = exec.Command("dd", "if="+target, "of=/dev/null", "bs=1M", "iflag=direct").CombinedOutput()
		if err != nil {
			t.Fatalf("dd read: %v %s", err, out)
		}
		t.Logf("%s: write+fsync 100 MiB %.0f MiB/s, read %.0f MiB/s", target, 100/d.Seconds(), 100/time.Since(start).Seconds())
	}
}
