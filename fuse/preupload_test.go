package fuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// openForPreUpload creates path through the mount and returns the open
// file and its state in the mount, with flushes held off (flushMu taken;
// the caller unlocks it), so that written spans stay in the dirty set.
func openForPreUpload(t *testing.T, c *cluster, path string) (*os.File, *file) {
	t.Helper()
	h, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	in, err := c.client.Resolve(context.Background(), filerPath(path))
	if err != nil {
		t.Fatal(err)
	}
	f := sharedMount.fs.lookupFile(in.Ino)
	if f == nil {
		t.Fatalf("no state for open inode %d", in.Ino)
	}
	f.flushMu.Lock()
	return h, f
}

// writeDirect buffers data at off in f as a FUSE write would, in 1 MiB
// writes.
func writeDirect(t *testing.T, f *file, off uint64, data []byte) {
	t.Helper()
	for pos := 0; pos < len(data); pos += 1 << 20 {
		end := min(pos+1<<20, len(data))
		if err := f.write(context.Background(), off+uint64(pos), data[pos:end]); err != nil {
			t.Fatalf("write at %d: %v", off+uint64(pos), err)
		}
	}
}

// preUploads returns the uploads ahead of a flush of f's dirty spans, by
// span (nil where none).
func preUploads(f *file) []*preUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*preUpload
	for _, s := range f.dirty.spans {
		out = append(out, s.pre)
	}
	return out
}

// waitPreUploads waits until n spans of f's dirty set have an upload
// ahead of a flush and every one has finished.
func waitPreUploads(t *testing.T, f *file, n int) []*preUpload {
	t.Helper()
	var pres []*preUpload
	testutil.WaitFor(t, 90*time.Second, "uploads ahead of the flush finished", func() error {
		pres = preUploads(f)
		started := 0
		for _, p := range pres {
			if p == nil {
				continue
			}
			started++
			if !p.finished() {
				return errors.New("an upload is still running")
			}
		}
		if started < n {
			return fmt.Errorf("%d of %d spans uploading", started, n)
		}
		return nil
	})
	return pres
}

// TestPreUploadOverwrite: full spans of a sequential write are uploaded
// before any flush takes them; a later write over one of them must reach
// the filer, not the needle uploaded before it.
func TestPreUploadOverwrite(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "pre-overwrite")
	h, f := openForPreUpload(t, c, p)
	locked := true
	defer func() {
		if locked {
			f.flushMu.Unlock()
		}
	}()
	want := randBytes(2*maxSpan, 31)
	writeDirect(t, f, 0, want)
	before := waitPreUploads(t, f, 2)
	for i, p := range before {
		if p == nil || p.err != nil {
			t.Fatalf("span %d: upload ahead of the flush %+v", i, p)
		}
	}
	patch := randBytes(1<<20, 32)
	writeDirect(t, f, 1<<20, patch)
	copy(want[1<<20:], patch)
	// The first span, full again, is uploaded anew; the second keeps its
	// upload.
	if pres := preUploads(f); pres[0] == before[0] || pres[1] != before[1] {
		t.Fatalf("after overwriting the first span: uploads ahead %v, before %v; want a new one for it and the same for the second", pres, before)
	}
	f.flushMu.Unlock()
	locked = false
	if err := f.flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatalf("committed %d bytes differ from the %d written (the overwrite was lost?)", len(got), len(want))
	}
	if err := h.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestPreUploadFailureNotCommitted: needles uploaded ahead of a flush
// that succeeded are not committed while later ones of the same data
// failed: the flush fails as a whole, reports the error until the data is
// stored, and then stores every byte.
func TestPreUploadFailureNotCommitted(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "pre-failure")
	h, f := openForPreUpload(t, c, p)
	locked := true
	defer func() {
		if locked {
			f.flushMu.Unlock()
		}
	}()
	first := randBytes(2*maxSpan, 41)
	writeDirect(t, f, 0, first)
	for i, p := range waitPreUploads(t, f, 2) {
		if p == nil || p.err != nil {
			t.Fatalf("span %d: upload ahead of the flush %+v", i, p)
		}
	}

	restart := c.volumeDown(t)
	defer restart()
	second := randBytes(2*maxSpan, 42)
	writeDirect(t, f, uint64(len(first)), second)
	failed := 0
	for _, p := range waitPreUploads(t, f, 3) {
		if p != nil && p.err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no upload ahead of the flush failed with the volume server down")
	}
	f.flushMu.Unlock()
	locked = false
	ctx := context.Background()
	if err := f.flush(ctx); err == nil {
		t.Fatal("flush with the volume server down succeeded")
	}
	in, err := c.client.Resolve(ctx, filerPath(p))
	if err != nil {
		t.Fatal(err)
	}
	if in.Size != 0 {
		t.Fatalf("after the failed flush the filer has %d bytes committed, want none (the flush is all or nothing)", in.Size)
	}
	if err := f.flush(ctx); err == nil {
		t.Fatal("second flush with the volume server down succeeded")
	}

	restart()
	if err := f.flush(ctx); err != nil {
		t.Fatalf("flush after the volume server is back: %v", err)
	}
	want := append(append([]byte{}, first...), second...)
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatalf("committed %d bytes differ from the %d written", len(got), len(want))
	}
	if err := h.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestSequentialWriteWholeNeedles: the background flush leaves the span a
// sequential writer is filling buffered, so a file written in order is
// stored as whole 4 MiB needles, however the flush rounds fall, and fsync
// then stores the rest.
func TestSequentialWriteWholeNeedles(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "whole-needles")
	h, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const size = 10*maxNeedle + 1<<20
	data := randBytes(size, 51)
	for pos := 0; pos < size; pos += 1 << 20 {
		if _, err := h.Write(data[pos : pos+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	ctx := context.Background()
	in, err := c.client.Resolve(ctx, filerPath(p))
	if err != nil {
		t.Fatal(err)
	}
	full, err := c.client.GetAttr(ctx, in.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if full.Size != size || len(full.Slices) != 11 {
		t.Fatalf("%d bytes in %d slices, want %d bytes in 11", full.Size, len(full.Slices), size)
	}
	for i, s := range full.Slices {
		want := uint64(maxNeedle)
		if i == 10 {
			want = 1 << 20
		}
		if s.Off != uint64(i)*maxNeedle || s.Len != want || s.NeedleOff != 0 {
			t.Fatalf("slice %d is %+v, want %d bytes at %d, a needle of its own", i, s, want, uint64(i)*maxNeedle)
		}
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, data) {
		t.Fatal("committed content differs from what was written")
	}
	if err := h.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestFlushTakesTheTail: the span a sequential writer is filling is left
// behind only by background rounds; the flush of fsync and close stores it
// too, whatever the buffer looks like.
func TestFlushTakesTheTail(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "flush-tail")
	h, f := openForPreUpload(t, c, p)
	// A full span and the partial one after it, as a sequential writer
	// leaves them mid-needle; the background flush waits for flushMu.
	data := randBytes(maxSpan+2<<20, 71)
	writeDirect(t, f, 0, data)
	err := f.flushLocked(context.Background()) // what fsync runs, flushMu held
	f.flushMu.Unlock()
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	in, err := c.client.Resolve(context.Background(), filerPath(p))
	if err != nil {
		t.Fatal(err)
	}
	if in.Size != uint64(len(data)) {
		t.Fatalf("after the flush the filer has %d bytes committed, want all %d written", in.Size, len(data))
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, data) {
		t.Fatal("committed content differs from what was written")
	}
	if err := h.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
