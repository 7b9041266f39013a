package fuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeNeedles serves needle ranges from memory and counts fetches.
type fakeNeedles struct {
	data    map[string][]byte
	fetches atomic.Int64
	fail    atomic.Bool
	gate    chan struct{} // if set, every fetch waits for it
}

// fetch answers as the data client does: into buf's array when it fits.
func (n *fakeNeedles) fetch(_ context.Context, fid string, off, count int64, buf []byte) ([]byte, error) {
	n.fetches.Add(1)
	if n.gate != nil {
		<-n.gate
	}
	if n.fail.Load() {
		return nil, errors.New("volume server unreachable")
	}
	d := n.data[fid]
	if off >= int64(len(d)) {
		return nil, nil
	}
	part := d[off:min(int64(len(d)), off+count)]
	if len(part) <= cap(buf) {
		return append(buf[:0], part...), nil
	}
	return append([]byte(nil), part...), nil
}

func TestChunkCacheReadsExactRanges(t *testing.T) {
	big := randBytes(2*chunkSize+12345, 1)
	n := &fakeNeedles{data: map[string][]byte{"1,01": big, "1,02": []byte("tiny")}}
	c := newChunkCache(8*chunkSize, n.fetch)
	ctx := context.Background()
	for _, r := range []struct{ off, n int }{{0, 10}, {chunkSize - 5, 10}, {chunkSize - 1, 2*chunkSize + 12345 - chunkSize + 1}, {2*chunkSize + 12340, 100}, {len(big), 10}} {
		dst := make([]byte, r.n)
		got, err := c.read(ctx, ctx, "1,01", uint64(r.off), dst, false)
		if err != nil {
			t.Fatal(err)
		}
		want := big[min(r.off, len(big)):min(r.off+r.n, len(big))]
		if got != len(want) || !bytes.Equal(dst[:got], want) {
			t.Fatalf("read %d+%d: got %d bytes, want %d", r.off, r.n, got, len(want))
		}
	}
	if f := n.fetches.Load(); f != 3 {
		t.Fatalf("%d fetches for the 3 chunks of the needle, want 3 (each chunk once)", f)
	}
	dst := make([]byte, 10)
	if got, err := c.read(ctx, ctx, "1,02", 1, dst, false); err != nil || got != 3 || string(dst[:3]) != "iny" {
		t.Fatalf("short needle: %d %v %q", got, err, dst[:got])
	}
}

// A random reader fetches only the small piece around what it reads,
// unless the whole chunk is cached already.
func TestChunkCacheRandomReadsFetchSmallPieces(t *testing.T) {
	big := randBytes(chunkSize+777, 5)
	var mu sync.Mutex
	var asked [][2]int64
	fetch := func(_ context.Context, fid string, off, n int64, _ []byte) ([]byte, error) {
		mu.Lock()
		asked = append(asked, [2]int64{off, n})
		mu.Unlock()
		if off >= int64(len(big)) {
			return nil, nil
		}
		return append([]byte(nil), big[off:min(int64(len(big)), off+n)]...), nil
	}
	c := newChunkCache(8*chunkSize, fetch)
	ctx := context.Background()
	for _, r := range []struct{ off, n int }{{300000, 4096}, {pieceSize - 10, 20}, {chunkSize + 700, 100}} {
		dst := make([]byte, r.n)
		got, err := c.read(ctx, ctx, "1,01", uint64(r.off), dst, true)
		want := big[r.off:min(r.off+r.n, len(big))]
		if err != nil || got != len(want) || !bytes.Equal(dst[:got], want) {
			t.Fatalf("random read %d+%d: %d bytes, %v", r.off, r.n, got, err)
		}
	}
	for _, a := range asked {
		if a[1] != pieceSize || a[0]%pieceSize != 0 {
			t.Fatalf("random reads fetched %v, want aligned pieces of %d bytes", asked, pieceSize)
		}
	}
	if len(asked) != 4 { // piece 2, pieces 0 and 1, the piece at the needle's end
		t.Fatalf("fetched %v, want 4 pieces", asked)
	}
	// Once the whole chunk is cached, random reads inside it use it.
	dst := make([]byte, 10)
	if _, err := c.read(ctx, ctx, "1,01", 5, dst, false); err != nil {
		t.Fatal(err)
	}
	n := len(asked)
	if got, err := c.read(ctx, ctx, "1,01", 3*pieceSize+1, dst, true); err != nil || got != 10 || !bytes.Equal(dst, big[3*pieceSize+1:3*pieceSize+11]) {
		t.Fatalf("random read inside a cached chunk: %d %v", got, err)
	}
	if len(asked) != n {
		t.Fatalf("a random read inside a cached chunk fetched again: %v", asked[n:])
	}
}

func TestChunkCacheSharesFetchAndDoesNotCacheErrors(t *testing.T) {
	n := &fakeNeedles{data: map[string][]byte{"1,01": randBytes(1000, 2)}, gate: make(chan struct{})}
	c := newChunkCache(8*chunkSize, n.fetch)
	ctx := context.Background()
	hits := metricValue(mountCacheHits)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 100)
			if got, err := c.read(ctx, ctx, "1,01", 0, dst, false); err != nil || got != 100 {
				errs <- fmt.Errorf("read: %d %v", got, err)
			}
		}()
	}
	// Every reader has either started the fetch or found it in flight.
	for metricValue(mountCacheHits)-hits < 7 {
		if n.fetches.Load() > 1 {
			break
		}
		runtimeYield()
	}
	close(n.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if f := n.fetches.Load(); f != 1 {
		t.Fatalf("%d fetches for 8 concurrent readers of one chunk, want 1", f)
	}

	n2 := &fakeNeedles{data: map[string][]byte{"1,01": []byte("hello")}}
	c2 := newChunkCache(8*chunkSize, n2.fetch)
	n2.fail.Store(true)
	dst := make([]byte, 5)
	if _, err := c2.read(ctx, ctx, "1,01", 0, dst, false); err == nil {
		t.Fatal("read succeeded while the volume server fails")
	}
	n2.fail.Store(false)
	if got, err := c2.read(ctx, ctx, "1,01", 0, dst, false); err != nil || string(dst[:got]) != "hello" {
		t.Fatalf("read after the failure: %q %v (a failed fetch must not be cached)", dst[:got], err)
	}
}

func TestChunkCacheIsBounded(t *testing.T) {
	n := &fakeNeedles{data: map[string][]byte{}}
	for i := range 20 {
		n.data[fmt.Sprintf("1,%02x", i)] = randBytes(chunkSize, uint64(i))
	}
	c := newChunkCache(4*chunkSize, n.fetch)
	ctx := context.Background()
	dst := make([]byte, 1)
	for i := range 20 {
		if _, err := c.read(ctx, ctx, fmt.Sprintf("1,%02x", i), 0, dst, false); err != nil {
			t.Fatal(err)
		}
		if b := c.cachedBytes(); b > 4*chunkSize {
			t.Fatalf("cache holds %d bytes, bound %d", b, 4*chunkSize)
		}
	}
	// The most recent needle is still cached, the first is gone.
	before := n.fetches.Load()
	if _, err := c.read(ctx, ctx, "1,13", 0, dst, false); err != nil || n.fetches.Load() != before {
		t.Fatalf("the last needle read was evicted (err %v)", err)
	}
	if _, err := c.read(ctx, ctx, "1,00", 0, dst, false); err != nil || n.fetches.Load() != before+1 {
		t.Fatalf("the first needle read was not evicted (err %v)", err)
	}
}

// A mount's cached chunks never hide another mount's write from a reader
// that opens the file after the writer closed it (close-to-open), and a
// sequential reader is served by read-ahead.
func TestCloseToOpenAcrossMounts(t *testing.T) {
	c, dir := shared(t)
	path1 := filepath.Join(dir, "shared.dat")
	path2 := c.secondMount(t, path1)

	v1 := randBytes(3*maxNeedle+1000, 11)
	mustWrite(t, path1, v1)
	hits := metricValue(mountCacheHits)
	if got := mustRead(t, path2); !bytes.Equal(got, v1) {
		t.Fatal("second mount reads other bytes than the first wrote")
	}
	if metricValue(mountCacheHits) == hits {
		t.Fatal("a sequential read of 12 MiB found nothing read ahead in the chunk cache")
	}

	// Overwrite the middle through the first mount, close, reopen on the
	// second: the new bytes, though the old chunks are cached there.
	f, err := os.OpenFile(path1, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := randBytes(100000, 12)
	if _, err := f.WriteAt(patch, maxNeedle-50000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), v1...)
	copy(want[maxNeedle-50000:], patch)
	if got := mustRead(t, path2); !bytes.Equal(got, want) {
		t.Fatal("second mount does not see the first mount's closed write on open")
	}
	// And the other way round.
	mustWrite(t, path2, v1[:5000])
	if got := mustRead(t, path1); !bytes.Equal(got, v1[:5000]) {
		t.Fatal("first mount does not see the second mount's rewrite on open")
	}
}

func runtimeYield() { runtime.Gosched() }

// metricValue returns the value of a counter or gauge, or the sum of a
// vector's counters.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 256)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			continue
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Gauge != nil:
			sum += d.Gauge.GetValue()
		case d.Histogram != nil:
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}

// A file read again after it was closed is served from the kernel's page
// cache when nothing changed it since (open keeps the cache), and read
// through the mount again once another mount changed it.
func TestOpenKeepsUnchangedCache(t *testing.T) {
	c, dir := shared(t)
	path1 := filepath.Join(dir, "kept.dat")
	path2 := c.secondMount(t, path1)

	v1 := randBytes(64*4096, 21)
	mustWrite(t, path1, v1)
	if got := mustRead(t, path1); !bytes.Equal(got, v1) {
		t.Fatal("read back other bytes than written")
	}
	before := mountReads()
	if got := mustRead(t, path1); !bytes.Equal(got, v1) {
		t.Fatal("second read gives other bytes")
	}
	if n := mountReads() - before; n != 0 {
		t.Fatalf("reopening an unchanged file sent %v reads to the mount; its pages were cached", n)
	}

	v2 := randBytes(64*4096, 22)
	mustWrite(t, path2, v2)
	before = mountReads()
	if got := mustRead(t, path1); !bytes.Equal(got, v2) {
		t.Fatal("the first mount serves its cached pages after another mount rewrote the file")
	}
	if mountReads() == before {
		t.Fatal("a file changed by another mount was not read through the mount again")
	}
}

// A file a database keeps open and writes with fsync keeps its cached
// pages across a stat that shows its new mtime (the kernel would drop them
// all under automatic invalidation), and still sees another mount's write
// through the same descriptor once the change event arrives.
func TestOwnWritesKeepPages(t *testing.T) {
	c, dir := shared(t)
	path1 := filepath.Join(dir, "table.dat")
	path2 := c.secondMount(t, path1)

	want := randBytes(64*4096, 31)
	mustWrite(t, path1, want)
	f, err := os.OpenFile(path1, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	readAll := func() []byte {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		return got
	}
	readAll()
	for i := range 3 {
		page := randBytes(4096, uint64(32+i))
		off := int64(i * 5 * 4096)
		if _, err := f.WriteAt(page, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], page)
		st, err := f.Stat() // a getattr: the write made the kernel forget the attributes
		if err != nil || st.Size() != int64(len(want)) {
			t.Fatalf("stat after fsync: %v, %v", st, err)
		}
		before := mountReads()
		if got := readAll(); !bytes.Equal(got, want) {
			t.Fatalf("round %d: read back other bytes than written", i)
		}
		if n := mountReads() - before; n != 0 {
			t.Fatalf("round %d: reading the file after its own write, fsync and a stat sent %v reads to the mount; its pages were cached", i, n)
		}
	}

	// Another mount rewrites a page; this descriptor sees it without a reopen.
	page := randBytes(4096, 40)
	g, err := os.OpenFile(path2, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(page, 8*4096); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	copy(want[8*4096:], page)
	deadline := time.Now().Add(30 * time.Second)
	for !bytes.Equal(readAll(), want) {
		if time.Now().After(deadline) {
			t.Fatal("an open descriptor still reads its cached page 30 s after another mount rewrote it")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A file open on one mount and rewritten on another: stats on the first
// mount drop its cached pages once for the change, not at every stat, so
// the kernel goes on caching the attributes between stats.
func TestStatsAfterChangeElsewhereStayCached(t *testing.T) {
	c, dir := shared(t)
	path1 := filepath.Join(dir, "watched.dat")
	path2 := c.secondMount(t, path1)
	mustWrite(t, path1, randBytes(8*4096, 51))
	f, err := os.Open(path1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mustWrite(t, path2, randBytes(16*4096, 52))
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 16*4096 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first mount still reports %d bytes 30 s after the second wrote %d", st.Size(), 16*4096)
		}
		time.Sleep(20 * time.Millisecond)
	}
	getattrs := func() float64 { return metricValue(mountOps.WithLabelValues(opGetAttr, "ok")) }
	before := getattrs()
	for range 20 { // an application polling the file, 20 times in 0.2 s
		if _, err := f.Stat(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The kernel caches attributes for 1 s: a slow machine may see it
	// expire once or twice, never at every stat.
	if n := getattrs() - before; n > 4 {
		t.Fatalf("20 stats of a file changed elsewhere sent %v getattrs to the mount; the kernel should cache them", n)
	}
}

// mountReads counts the reads the mounts of the test process answered.
func mountReads() float64 { return metricValue(mountOps.WithLabelValues(opRead, "ok")) }

// A chunk's buffer is used again only once it is out of the cache and no
// reader holds it: a view taken before its chunk is evicted keeps its
// bytes however many other chunks are loaded meanwhile, and its buffer
// serves a later fetch once the view is released.
func TestChunkCacheReusesBuffersOnlyWhenUnused(t *testing.T) {
	n := &fakeNeedles{data: map[string][]byte{}}
	for i := range 6 {
		n.data[fmt.Sprintf("1,%02x", i)] = randBytes(chunkSize, uint64(10+i))
	}
	c := newChunkCache(2*chunkSize, n.fetch)
	ctx := context.Background()

	held, release, ok, err := c.view(ctx, ctx, "1,00", 100, 4096, false)
	if err != nil || !ok {
		t.Fatalf("view: ok %v, err %v", ok, err)
	}
	dst := make([]byte, chunkSize)
	for i := 1; i < 6; i++ {
		fid := fmt.Sprintf("1,%02x", i)
		if got, err := c.read(ctx, ctx, fid, 0, dst, false); err != nil || got != chunkSize || !bytes.Equal(dst, n.data[fid]) {
			t.Fatalf("read of %s: %d bytes, err %v, or other bytes", fid, got, err)
		}
	}
	if c.has(bigKey("1,00", 0)) {
		t.Fatal("needle 0 is still cached after 5 more chunks in a cache of 2")
	}
	if !bytes.Equal(held, n.data["1,00"][100:4196]) {
		t.Fatal("a view's bytes changed after its chunk was evicted while the view was held")
	}
	c.mu.Lock()
	for _, b := range c.mu.free {
		if within(held, b) {
			c.mu.Unlock()
			t.Fatal("the buffer of a held view is on the free list")
		}
	}
	recycled := len(c.mu.free)
	c.mu.Unlock()
	if recycled == 0 {
		t.Fatal("no evicted chunk's buffer was put on the free list")
	}

	release()
	release() // a second call does nothing
	c.mu.Lock()
	var found bool
	for _, b := range c.mu.free {
		found = found || within(held, b)
	}
	c.mu.Unlock()
	if !found {
		t.Fatal("the released view's buffer did not go to the free list")
	}
	// The next whole-chunk fetch reads into a recycled buffer.
	b, release, ok, err := c.view(ctx, ctx, "1,00", 0, chunkSize, false)
	if err != nil || !ok || !bytes.Equal(b, n.data["1,00"]) {
		t.Fatalf("view of needle 0 again: ok %v, err %v, or other bytes", ok, err)
	}
	c.mu.Lock()
	ch := c.mu.chunks[bigKey("1,00", 0)]
	c.mu.Unlock()
	if ch == nil || ch.buf == nil {
		t.Fatal("a whole chunk fetched with buffers on the free list did not use one")
	}
	release()
}

// Readers that view and copy chunks while others evict them never see
// another chunk's bytes (run with -race).
func TestChunkCacheRecyclingUnderConcurrentReaders(t *testing.T) {
	n := &fakeNeedles{data: map[string][]byte{}}
	const needles = 8
	for i := range needles {
		n.data[fmt.Sprintf("1,%02x", i)] = randBytes(chunkSize/4, uint64(40+i))
	}
	// Room for 3 of the 8 needles: most reads evict something.
	c := newChunkCache(3*chunkSize/4, n.fetch)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 3000)
			for i := range 300 {
				fid := fmt.Sprintf("1,%02x", (r*7+i*3)%needles)
				off := uint64((i * 4099) % (chunkSize/4 - 3000))
				want := n.data[fid][off : off+3000]
				if i%2 == 0 {
					b, release, ok, err := c.view(ctx, ctx, fid, off, 3000, false)
					if err != nil || !ok {
						errs <- fmt.Errorf("view: ok %v, err %v", ok, err)
						return
					}
					runtime.Gosched() // let others evict and fetch meanwhile
					same := bytes.Equal(b, want)
					release()
					if !same {
						errs <- fmt.Errorf("a view of %s at %d held other bytes", fid, off)
						return
					}
					continue
				}
				if got, err := c.read(ctx, ctx, fid, off, dst, false); err != nil || got != 3000 || !bytes.Equal(dst, want) {
					errs <- fmt.Errorf("read of %s at %d: %d bytes, err %v, or other bytes", fid, off, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A needle much shorter than a chunk, fetched as one, keeps no 4 MiB
// buffer: the cache bounds the bytes it holds, not its buffers.
func TestChunkCacheShortNeedleKeepsNoBuffer(t *testing.T) {
	n := &fakeNeedles{data: map[string][]byte{"1,01": randBytes(100<<10, 77)}}
	c := newChunkCache(8*chunkSize, n.fetch)
	ctx := context.Background()
	b, release, ok, err := c.view(ctx, ctx, "1,01", 0, 100<<10, false)
	if err != nil || !ok || !bytes.Equal(b, n.data["1,01"]) {
		t.Fatalf("view of a short needle: ok %v, err %v, or other bytes", ok, err)
	}
	defer release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.mu.chunks[bigKey("1,01", 0)]; ch == nil || ch.buf != nil || cap(ch.data) >= chunkSize {
		t.Fatal("a 100 KiB needle is held in a whole-chunk buffer")
	}
	if len(c.mu.free) != 1 {
		t.Fatalf("%d buffers on the free list, want the one the fetch did not keep", len(c.mu.free))
	}
}
