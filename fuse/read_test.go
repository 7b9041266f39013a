package fuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// readFixture is a file of committed needles served from memory, with the
// mount state read and readAhead need and nothing else.
type readFixture struct {
	f      *file
	n      *fakeNeedles
	fids   []string
	data   []byte // the file's bytes
	needle uint64 // bytes per needle
}

// newReadFixture makes a file of count needles of size bytes each.
func newReadFixture(t *testing.T, count int, size uint64, gate chan struct{}) *readFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	x := &readFixture{n: &fakeNeedles{data: map[string][]byte{}, gate: gate}, needle: size}
	var sl []filer.Slice
	for i := range count {
		fid := fmt.Sprintf("1,%02x", i+1)
		d := randBytes(int(size), uint64(i+7))
		x.n.data[fid] = d
		x.fids = append(x.fids, fid)
		x.data = append(x.data, d...)
		sl = append(sl, filer.Slice{Off: uint64(i) * size, Len: size, Fid: fid})
	}
	fs := &fileSystem{ctx: ctx, log: slog.New(slog.DiscardHandler), cache: newChunkCache(64<<20, x.n.fetch)}
	x.f = &file{fs: fs, ino: 2, dirty: newDirtySet(nil), pieces: filer.NewPieceList(filer.Pieces(sl)), size: uint64(count) * size, gen: 1}
	x.f.progress.L = &x.f.mu
	return x
}

func (x *readFixture) read(t *testing.T, off uint64, n int) []byte {
	t.Helper()
	b, release, err := x.f.read(context.Background(), off, n)
	if err != nil {
		t.Fatalf("read %d bytes at %d: %v", n, off, err)
	}
	defer release()
	want := x.data[off:min(uint64(len(x.data)), off+uint64(n))]
	if !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes at %d: got %d bytes that differ from the file's", n, off, len(b))
	}
	return bytes.Clone(b)
}

// prefetched reports whether the chunk of needle i is cached or being
// fetched.
func (x *readFixture) prefetched(i int) bool { return x.f.fs.cache.has(bigKey(x.fids[i], 0)) }

// settle waits until no read-ahead fetch is in flight, so that the next
// read's read-ahead finds every fetch free whatever the machine's speed.
func (x *readFixture) settle(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "read-ahead fetches to end", cond(func() bool { return len(x.f.fs.cache.prefetch) == 0 }))
}

// cond turns a condition into what testutil.WaitFor waits on.
func cond(ok func() bool) func() error {
	return func() error {
		if !ok() {
			return errors.New("not yet")
		}
		return nil
	}
}

func TestChunkCacheView(t *testing.T) {
	big := randBytes(2*chunkSize+100, 3)
	n := &fakeNeedles{data: map[string][]byte{"1,01": big}}
	c := newChunkCache(8*chunkSize, n.fetch)
	ctx := context.Background()

	b, _, ok, err := c.view(ctx, ctx, "1,01", 1000, 5000, false)
	if err != nil || !ok || !bytes.Equal(b, big[1000:6000]) {
		t.Fatalf("view within a chunk: ok %v, err %v, equal %v", ok, err, bytes.Equal(b, big[1000:6000]))
	}
	// A range across two chunks is not viewed, and fetches nothing.
	before := n.fetches.Load()
	if _, _, ok, err := c.view(ctx, ctx, "1,01", chunkSize-10, 20, false); ok || err != nil {
		t.Fatalf("view across chunks: ok %v, err %v; want not ok", ok, err)
	}
	if n.fetches.Load() != before {
		t.Fatalf("a view across chunks fetched")
	}
	// The needle's end: fewer bytes; past it: none.
	if b, _, ok, err := c.view(ctx, ctx, "1,01", 2*chunkSize+90, 1000, false); !ok || err != nil || !bytes.Equal(b, big[2*chunkSize+90:]) {
		t.Fatalf("view at the needle's end: %d bytes, ok %v, err %v", len(b), ok, err)
	}
	if b, _, ok, err := c.view(ctx, ctx, "1,01", 2*chunkSize+200, 10, false); !ok || err != nil || len(b) != 0 {
		t.Fatalf("view past the needle's end: %d bytes, ok %v, err %v", len(b), ok, err)
	}
	// A random reader gets a small piece unless the chunk is cached.
	before = n.fetches.Load()
	if b, _, ok, err := c.view(ctx, ctx, "1,01", chunkSize+pieceSize+5, 4096, true); !ok || err != nil || !bytes.Equal(b, big[chunkSize+pieceSize+5:][:4096]) {
		t.Fatalf("small view: ok %v, err %v", ok, err)
	}
	if !c.has(chunkKey{"1,01", pieceSize, (chunkSize + pieceSize) / pieceSize}) || c.has(bigKey("1,01", chunkSize)) {
		t.Fatalf("a random reader's view did not fetch a small piece")
	}
	if n.fetches.Load() != before+1 {
		t.Fatalf("small view: %d fetches, want 1", n.fetches.Load()-before)
	}
}

// Reads that lie in one chunk of one needle come from the cache without a
// copy; reads across chunks or needles, and reads over buffered writes,
// are copied: all of them return the file's bytes.
func TestReadDirectAndCopied(t *testing.T) {
	x := newReadFixture(t, 3, 2*chunkSize, nil) // needles of two chunks
	b, release, err := x.f.read(context.Background(), 4096, 256<<10)
	if err != nil || !bytes.Equal(b, x.data[4096:4096+256<<10]) {
		t.Fatalf("read within one chunk: err %v, or other bytes", err)
	}
	ch, err := x.f.fs.cache.get(context.Background(), context.Background(), bigKey(x.fids[0], 0))
	if err != nil {
		t.Fatal(err)
	}
	if &b[0] != &ch.data[4096] {
		t.Errorf("a read within one chunk was copied")
	}
	x.f.fs.cache.release(ch)
	release()
	x.read(t, chunkSize-1000, 256<<10)          // across two chunks of a needle
	x.read(t, 2*chunkSize-1000, 256<<10)        // across two needles
	x.read(t, uint64(len(x.data))-100, 256<<10) // the end of the file

	// Buffered bytes over committed ones: the read shows them.
	over := bytes.Repeat([]byte{0xAB}, 300)
	x.f.mu.Lock()
	if err := x.f.dirty.write(5000, over); err != nil {
		x.f.mu.Unlock()
		t.Fatal(err)
	}
	x.f.mu.Unlock()
	copy(x.data[5000:], over)
	x.read(t, 4096, 256<<10)
	x.read(t, 4096, 100) // before the buffered bytes: still the needle's
}

// A sequential reader whose reads arrive out of order (the kernel's
// read-ahead sends several at once) keeps read-ahead going.
func TestReadAheadOutOfOrder(t *testing.T) {
	x := newReadFixture(t, 16, chunkSize, nil)
	const mib = 1 << 20
	// Pairs of 1 MiB reads, each pair served in reverse order.
	for i := uint64(0); i < 8; i += 2 {
		x.read(t, (i+1)*mib, mib)
		x.settle(t)
		x.read(t, i*mib, mib)
		x.settle(t)
	}
	// Read-ahead runs readAhead bytes past the furthest read (8 MiB).
	testutil.WaitFor(t, 30*time.Second, "read-ahead of the chunks past the reader", cond(func() bool {
		return x.prefetched(5) && x.prefetched(2)
	}))
}

// Two sequential readers of one file far apart both get read-ahead.
func TestReadAheadTwoReaders(t *testing.T) {
	x := newReadFixture(t, 16, chunkSize, nil)
	const mib = 1 << 20
	for i := uint64(0); i < 3; i++ {
		x.read(t, i*mib, mib)
		x.settle(t)
		x.read(t, (40+i)*mib, mib)
		x.settle(t)
	}
	// Reader one is at 3 MiB, reader two at 43 MiB: each has the next
	// chunks read ahead.
	testutil.WaitFor(t, 30*time.Second, "read-ahead for both readers", cond(func() bool {
		return x.prefetched(1) && x.prefetched(4) && x.prefetched(11) && x.prefetched(14)
	}))
}

// When every read-ahead fetch is busy, the chunks that could not start are
// read ahead by a later sequential read, not skipped.
func TestReadAheadRetriesBusyChunks(t *testing.T) {
	gate := make(chan struct{})
	x := newReadFixture(t, 16, 2<<20, gate) // needles of 2 MiB: one chunk each
	done := make(chan []byte, 1)
	go func() {
		b, release, _ := x.f.read(context.Background(), 0, 1<<20)
		done <- bytes.Clone(b)
		release()
	}()
	gate <- struct{}{} // lets the reader's own fetch of needle 0 through
	if b := <-done; !bytes.Equal(b, x.data[:1<<20]) {
		t.Fatal("the first read returned other bytes")
	}
	// Read-ahead of [1 MiB, 17 MiB) started needles 1 to 4 (they wait at
	// the gate) and found no room for 5 to 8.
	for i := 1; i <= 8; i++ {
		if x.prefetched(i) != (i <= 4) {
			t.Fatalf("needle %d read ahead: %v, want %v", i, x.prefetched(i), i <= 4)
		}
	}
	close(gate)
	x.settle(t)
	x.read(t, 1<<20, 1<<20)
	for i := 5; i <= 8; i++ {
		if !x.prefetched(i) {
			t.Fatalf("needle %d, busy at the first read-ahead, was not read ahead by the next read", i)
		}
	}
}

// A random reader starts no read-ahead (a read at 0 is sequential only as
// the file's first read).
func TestReadAheadNotForRandomReads(t *testing.T) {
	x := newReadFixture(t, 16, chunkSize, nil)
	for _, off := range []uint64{40 << 20, 0, 3 << 20, 61 << 20, 20 << 20, 9 << 20} {
		x.read(t, off, 4096)
	}
	if got := x.n.fetches.Load(); got != 6 {
		t.Fatalf("6 random reads made %d fetches, want 6 (no read-ahead)", got)
	}
	for i := range 16 {
		if x.prefetched(i) {
			t.Fatalf("chunk %d of needle %d was fetched whole for a random reader", 0, i)
		}
	}
}

// The mount sets the kernel's read-ahead window of its connection, and a
// sequential read through the kernel with it returns the file's bytes.
func TestMountReadAheadWindow(t *testing.T) {
	_, dir := shared(t)
	if os.Geteuid() != 0 {
		t.Skip("the read-ahead window is set only by a mount made as root")
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), fmt.Sprint(kernelReadAhead>>10); got != want {
		t.Fatalf("%s is %s, want %s", p, got, want)
	}

	data := randBytes(24<<20+12345, 99)
	path := filepath.Join(dir, "seq")
	mustWrite(t, path, data)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Drop the kernel's pages of the file, so the reads below reach the
	// mount through the kernel's read-ahead.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(data))
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("a sequential read returned %d bytes that differ from the %d written", len(got), len(data))
	}
}

// TestRacingLastClose reads a file's attributes, and opens it, while its
// last other handle closes: each reads the inode from the filer before the
// close commits the buffered writes. A stat uses it after the close
// dropped the file's state; an open holds the close off (the close waits
// for opens before it drops the state) and takes over the state instead.
// The size the kernel is told must include every byte the close stored,
// and every one must read back through the new handle: not a file as
// short as the inode read before the commit.
func TestRacingLastClose(t *testing.T) {
	c, _ := shared(t)
	m, dir := c.ownMount(t)
	for i, op := range []string{"open", "attr"} {
		t.Run(op, func(t *testing.T) {
			p := filepath.Join(dir, op)
			data := randBytes(64<<10, uint64(i))
			w, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			ino := m.fs.filerIno(st.Ino)

			inGap, release := holdAt(m, op, ino)
			defer release()
			type result struct {
				size int64
				n    int
				b    []byte
				err  error
			}
			got := make(chan result, 1)
			go func() {
				var r result
				if op == "attr" {
					// The kernel knows the size from the writes: make
					// it ask the mount.
					var stx unix.Statx_t
					if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_FORCE_SYNC, unix.STATX_SIZE, &stx); err != nil {
						got <- result{err: err}
						return
					}
					r.size = int64(stx.Size)
				}
				f, err := os.Open(p)
				if err != nil {
					got <- result{err: err}
					return
				}
				defer f.Close()
				r.b = make([]byte, len(data))
				r.n, r.err = f.ReadAt(r.b, 0)
				got <- r
			}()
			select {
			case <-inGap:
			case r := <-got:
				t.Fatalf("the %s ended before it reached the gap: %v", op, r.err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			// The kernel sends the release after close returns: wait
			// until the mount took the handle off (an open stops the
			// close there, so its state stays), or dropped the state.
			deadline := time.Now().Add(30 * time.Second)
			for m.fs.handlesOf(ino) > 0 || op == "attr" && m.fs.lookupFile(ino) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the close never reached the mount")
				}
				time.Sleep(time.Millisecond)
			}
			release()
			r := <-got
			if op == "attr" && r.size != int64(len(data)) {
				t.Errorf("stat says %d bytes, %d were written and closed", r.size, len(data))
			}
			if r.err != nil || r.n != len(data) || !bytes.Equal(r.b, data) {
				t.Fatalf("read %d of %d bytes through the new handle (err %v); equal: %v", r.n, len(data), r.err, bytes.Equal(r.b[:r.n], data[:r.n]))
			}
		})
	}
}

// holdAt holds the first request of m that reaches test gap point op
// (see fileSystem.testGap) for inode ino there; inGap is closed once one
// is held. release lets it go (and removes the hold); it may be called
// more than once.
func holdAt(m *Mounted, op string, ino uint64) (inGap <-chan struct{}, release func()) {
	in, resume := make(chan struct{}), make(chan struct{})
	var once, resumed sync.Once
	gap := func(o string, i uint64) {
		if o == op && i == ino {
			once.Do(func() { close(in); <-resume })
		}
	}
	m.fs.testGap.Store(&gap)
	return in, func() {
		resumed.Do(func() {
			m.fs.testGap.Store(nil)
			close(resume)
		})
	}
}

// handlesOf counts the open handles of inode ino.
func (fs *fileSystem) handlesOf(ino uint64) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, h := range fs.mu.handles {
		if h.ino == ino {
			n++
		}
	}
	return n
}

// TestCloseToOpenUnderChurn runs writers that append to a few files
// through short-lived descriptors (open, write, close) while readers open,
// stat and read the same files, through the same mount and through a
// second one. Whatever a reader sees must be the bytes written, however
// the closes, opens and stats interleave. Through the same mount it must
// also see every byte whose writer's close returned before the reader
// began (close-to-open consistency). Through the second mount it may stop
// short of them, and the test only counts how often: each commit there
// invalidates the kernel's attributes of the file, and the kernel discards
// an attribute reply that such an invalidation overtakes, so a read
// waiting on it ends at the size the kernel had (docs/mount.md).
func TestCloseToOpenUnderChurn(t *testing.T) {
	c, dir := shared(t)
	for _, mounts := range []string{"one mount", "two mounts"} {
		t.Run(mounts, func(t *testing.T) {
			d, err := os.MkdirTemp(dir, "churn-")
			if err != nil {
				t.Fatal(err)
			}
			churn(t, c, d, mounts == "two mounts")
		})
	}
}

// churn is TestCloseToOpenUnderChurn in dir, with the readers in a second
// mount if elsewhere.
func churn(t *testing.T, c *cluster, dir string, elsewhere bool) {
	const files, readers = 3, 4
	rounds := 150
	if testing.Short() {
		rounds = 40
	}
	pattern := func(file int, off int64) byte { return byte(off*7 + off>>9 + int64(file)*31) }
	var closed [files]atomic.Int64
	paths, readPaths := make([]string, files), make([]string, files)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("churn-%d", i))
		mustWrite(t, paths[i], nil)
		readPaths[i] = paths[i]
	}
	if elsewhere {
		other := c.secondMount(t, dir)
		for i := range paths {
			readPaths[i] = filepath.Join(other, filepath.Base(paths[i]))
		}
	}
	errs := make(chan error, files+readers)
	var reads, short atomic.Int64
	var writers sync.WaitGroup
	done := make(chan struct{})
	for i := range files {
		writers.Add(1)
		go func() {
			defer writers.Done()
			size := int64(0)
			for r := range rounds {
				f, err := os.OpenFile(paths[i], os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					errs <- err
					return
				}
				n := int64(1 + (r*7919+i*104729)%(48<<10))
				b := make([]byte, n)
				for k := range b {
					b[k] = pattern(i, size+int64(k))
				}
				if _, err := f.Write(b); err != nil {
					errs <- err
					return
				}
				if err := f.Close(); err != nil {
					errs <- err
					return
				}
				size += n
				closed[i].Store(size)
			}
		}()
	}
	var readersWG sync.WaitGroup
	for r := range readers {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				default:
				}
				i := (r + k) % files
				want := closed[i].Load()
				if k%3 == 0 {
					var stx unix.Statx_t
					if err := unix.Statx(unix.AT_FDCWD, readPaths[i], unix.AT_STATX_FORCE_SYNC, unix.STATX_SIZE, &stx); err != nil {
						errs <- err
						return
					}
					if int64(stx.Size) < want && !elsewhere {
						errs <- fmt.Errorf("file %d: stat says %d bytes after closes that wrote %d", i, stx.Size, want)
						return
					}
					continue
				}
				f, err := os.Open(readPaths[i])
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				if int64(len(b)) < want {
					if !elsewhere {
						errs <- fmt.Errorf("file %d: read %d bytes after closes that wrote %d", i, len(b), want)
						return
					}
					short.Add(1)
				}
				for off, c := range b {
					if c != pattern(i, int64(off)) {
						errs <- fmt.Errorf("file %d: byte %d of %d read is %#x, %#x was written", i, off, len(b), c, pattern(i, int64(off)))
						return
					}
				}
			}
		}()
	}
	writers.Wait()
	close(done)
	readersWG.Wait()
	close(errs)
	if elsewhere {
		t.Logf("%d of %d reads through the second mount stopped short of a close that returned before they began", short.Load(), reads.Load())
	}
	failed := false
	for err := range errs {
		t.Error(err)
		failed = true
	}
	if failed {
		for i, p := range paths {
			b := c.readThroughFiler(t, filerPath(p))
			first := -1
			for off, x := range b {
				if x != pattern(i, int64(off)) {
					first = off
					break
				}
			}
			t.Logf("file %d: written %d bytes, the filer has %d, first wrong byte there: %d", i, closed[i].Load(), len(b), first)
		}
	}
}

// TestReadWaitsForEarlierWrite drops the kernel's cached page of a file
// while a write to it is on its way to the mount, and reads the page
// again. The kernel copies a write's bytes into its cached page before it
// sends the WRITE, so the READ it sends next must not be answered with the
// bytes from before the write: the kernel would cache them, and later
// reads would see them although the write succeeded.
func TestReadWaitsForEarlierWrite(t *testing.T) {
	c, _ := shared(t)
	m, dir := c.ownMount(t)
	p := filepath.Join(dir, "f")
	head, tail := randBytes(160, 1), randBytes(4096-160, 2)
	mustWrite(t, p, head)
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	page := make([]byte, 4096)
	if n, _ := r.ReadAt(page, 0); n != len(head) {
		t.Fatalf("read %d bytes of a %d byte file", n, len(head))
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	ino := m.fs.filerIno(st.Ino)

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	gap := func(op string, in uint64) {
		if op == "write" && in == ino {
			once.Do(func() { close(held); <-release })
		}
	}
	m.fs.testGap.Store(&gap)
	defer m.fs.testGap.Store(nil)
	wrote := make(chan error, 1)
	go func() {
		_, err := w.WriteAt(tail, int64(len(head)))
		wrote <- err
	}()
	<-held
	// The page holds the new bytes and is not locked: drop it, as an
	// open or a change elsewhere would, and read it again.
	m.fs.notifyKernel(ino, 0)
	read := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(make([]byte, 4096), 0)
		if err == io.EOF {
			err = nil
		}
		read <- err
	}()
	// Served in order, the read waits for the write; answered at once,
	// it caches the page as it was before the write.
	select {
	case err := <-read:
		read <- err
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	n, err := r.ReadAt(page, 0)
	if n != len(page) || !bytes.Equal(page[:len(head)], head) || !bytes.Equal(page[len(head):n], tail[:n-len(head)]) {
		t.Fatalf("after the write, the page reads %d bytes (err %v), equal to what was written: %v", n, err, n == len(page) && bytes.Equal(page, append(head, tail...)))
	}
}

// TestOwnCommitFetchedFirst: a read that fetches the inode while the
// answer to this mount's own commit is on its way takes the commit's
// generation first. The kernel's pages went through the change (the
// writes did), so stats must go on showing the size it made. They showed
// the size from before it instead: the kernel cut the file back to that,
// and the next O_APPEND write landed there, over committed data.
func TestOwnCommitFetchedFirst(t *testing.T) {
	c, _ := shared(t)
	m, dir := c.ownMount(t)
	p := filepath.Join(dir, "f")
	first, more, last := randBytes(10000, 1), randBytes(5000, 2), randBytes(3000, 3)
	mustWrite(t, p, first)
	r, err := os.Open(p) // keeps the file's state
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	ino := m.fs.filerIno(st.Ino)
	inGap, release := holdAt(m, "commit", ino)
	defer release()

	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	synced := make(chan error, 1)
	go func() { synced <- w.Sync() }()
	select {
	case <-inGap:
	case err := <-synced:
		t.Fatalf("fsync ended before its commit was followed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the commit never reached the gap")
	}
	// A stat sees the new generation; a read past the kernel's pages
	// fetches it.
	size := func() int64 {
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_FORCE_SYNC, unix.STATX_SIZE, &stx); err != nil {
			t.Fatal(err)
		}
		return int64(stx.Size)
	}
	if got := size(); got != 15000 {
		t.Fatalf("stat during the commit: %d bytes, want 15000", got)
	}
	if err := unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 15000)
	if n, err := r.ReadAt(buf, 0); n != 15000 || !bytes.Equal(buf, append(append([]byte(nil), first...), more...)) {
		t.Fatalf("read during the commit: %d bytes, %v", n, err)
	}
	release()
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if got := size(); got != 15000 {
		t.Errorf("stat after the commit: %d bytes, want 15000", got)
	}
	if _, err := w.Write(last); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte(nil), first...), more...), last...)
	if got := c.readThroughFiler(t, "/"+filepath.Base(dir)+"/f"); !bytes.Equal(got, want) {
		t.Fatalf("the filer holds %d bytes, want %d: an O_APPEND write landed at the wrong place", len(got), len(want))
	}
}
