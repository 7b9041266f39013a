package fuse

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func testSpill(t *testing.T, dir string, limit int64) *spillStore {
	t.Helper()
	st, err := openSpill(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close() })
	return st
}

// The dirty set model holds with every span spilled as it goes.
func TestDirtySetModelSpilled(t *testing.T) {
	st := testSpill(t, t.TempDir(), 1<<30)
	testDirtySetModel(t, st)
}

// The spill file leaves no name behind, hands out slots sized to the
// span up to its limit, reads back what was written at offsets, and
// reuses freed slots of the same size.
func TestSpillStore(t *testing.T) {
	dir := t.TempDir()
	st := testSpill(t, dir, 3*spillSlotMax)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the spill file has a name in %s: %v", dir, ents)
	}
	a, b := randBytes(spillSlotMax, 1), randBytes(1000, 2)
	sa, err := st.put(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := st.put(b)
	if err != nil {
		t.Fatal(err)
	}
	if sb.size != spillSlotMin || sa.size != spillSlotMax {
		t.Fatalf("slots of %d and %d bytes for spans of %d and %d", sa.size, sb.size, len(a), len(b))
	}
	got := make([]byte, 500)
	if err := st.readAt(sa, 12345, got); err != nil || !bytes.Equal(got, a[12345:12845]) {
		t.Fatalf("read back at 12345: %v, equal=%v", err, bytes.Equal(got, a[12345:12845]))
	}
	if err := st.writeAt(sb, 10, []byte("overwrite")); err != nil {
		t.Fatal(err)
	}
	copy(b[10:], "overwrite")
	got = make([]byte, len(b))
	if err := st.readAt(sb, 0, got); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("read back after overwrite: %v", err)
	}
	if err := st.readAt(sb, 900, make([]byte, 101)); err == nil {
		t.Fatal("a read past the slot's bytes succeeded")
	}
	// 4 MiB + 4 KiB in use: one more 4 MiB slot fits, a third does not,
	// but small ones still do up to the limit.
	if _, err := st.put(a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.put(a); !errors.Is(err, errSpillFull) {
		t.Fatalf("a third 4 MiB slot with a limit of 12 MiB and 4 KiB in use: %v", err)
	}
	sm, err := st.put(randBytes(3000, 3))
	if err != nil {
		t.Fatal(err)
	}
	st.release(sa)
	sc, err := st.put(a)
	if err != nil || sc.at != sa.at {
		t.Fatalf("freed slot at %d not reused: %v at %d", sa.at, err, sc.at)
	}
	st.release(sm)
	sd, err := st.put(b)
	if err != nil || sd.at != sm.at {
		t.Fatalf("freed small slot at %d not reused: %v at %d", sm.at, err, sd.at)
	}
	if n := st.inUse(); n != 4 {
		t.Fatalf("%d slots in use, want 4", n)
	}
	if _, err := openSpill(filepath.Join(dir, "x"), 10); err == nil {
		t.Fatal("a limit below one slot was accepted")
	}
}

// A cache directory that runs out of space loses nothing: the spans that
// do not fit stay in memory, and the set reads back what was written.
func TestSpillNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=6m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	st := testSpill(t, dir, 1<<30)
	d := newDirtySet(st)
	// Four spans of 3 MiB (not touching): 6 MiB of tmpfs holds two.
	want := map[uint64][]byte{}
	for i := range uint64(4) {
		data := randBytes(3<<20, i+10)
		off := i * 8 << 20
		want[off] = data
		mustDirty(t, d.write(off, data))
	}
	moved, err := d.spill()
	if !isNoSpace(err) {
		t.Fatalf("spilling 12 MiB to a 6 MiB tmpfs: moved %d, err %v", moved, err)
	}
	if moved == 0 || moved >= d.bytes || d.mem != d.bytes-moved {
		t.Fatalf("moved %d of %d bytes, %d left in memory", moved, d.bytes, d.mem)
	}
	for off, data := range want {
		got := make([]byte, len(data))
		if _, err := d.overlay(off, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("span at %d after a full cache dir: %v, equal=%v", off, err, bytes.Equal(got, data))
		}
	}
	// Freed slots give their space back (holes punched): once the set
	// is dropped, as much fits again.
	d.drop()
	if st.inUse() != 0 {
		t.Fatalf("%d slots in use after drop", st.inUse())
	}
	d = newDirtySet(st)
	for off, data := range want {
		mustDirty(t, d.write(off, data))
	}
	if moved2, _ := d.spill(); moved2 != moved {
		t.Fatalf("after freeing, %d bytes spilled, first time %d", moved2, moved)
	}
	d.drop()
}

// A mount with a cache directory and a small memory bound: a file
// several times the bound is written, spills, reads back byte-identical
// before and after fsync, and memory held stays near the bound.
func TestMountSpill(t *testing.T) {
	c, dir := shared(t)
	const memBound = 8 << 20
	mnt := t.TempDir()
	cacheDir := t.TempDir()
	m := c.mount(t, Config{Root: "/", CacheDir: cacheDir, SpillMemory: memBound, SpillLimit: 256 << 20}, mnt)
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	if ents, _ := os.ReadDir(cacheDir); len(ents) != 0 {
		t.Fatalf("the spill file has a name in %s: %v", cacheDir, ents)
	}
	path := filepath.Join(mnt, filerPath(dir), "big")
	data := randBytes(6*memBound+12345, 77)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite a range that has spilled by now, across span borders.
	over := randBytes(3<<20, 78)
	if _, err := f.WriteAt(over, 1<<20+100); err != nil {
		t.Fatal(err)
	}
	copy(data[1<<20+100:], over)
	if m.fs.spilled.Load() == 0 {
		t.Fatalf("%d bytes written with a memory bound of %d, none spilled", len(data), memBound)
	}
	ino := m.fs.filerInoOf(t, path)
	readBack := func(when string) {
		t.Helper()
		m.fs.invalidate(ino, 0) // read through the mount, not the kernel's page cache
		if got := mustRead(t, path); !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes, want %d, equal=%v", when, len(got), len(data), bytes.Equal(got, data))
		}
	}
	readBack("before fsync")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	readBack("after fsync")
	if got := c.readThroughFiler(t, filerPath(filepath.Join(dir, "big"))); !bytes.Equal(got, data) {
		t.Fatalf("committed: %d bytes, equal=%v", len(got), bytes.Equal(got, data))
	}
	// One write and a few small spans past the bound at most.
	if peak := m.fs.memPeak.Load(); peak > memBound+(2<<20) {
		t.Fatalf("buffered bytes in memory peaked at %d, bound %d", peak, memBound)
	}
	if n := m.fs.spill.inUse(); n != 0 {
		t.Fatalf("%d spill slots still in use after fsync", n)
	}
	if m.fs.memBytes.Load() != 0 || m.fs.dirtyBytes.Load() != 0 {
		t.Fatalf("after fsync: %d bytes buffered, %d in memory", m.fs.dirtyBytes.Load(), m.fs.memBytes.Load())
	}
	t.Logf("wrote %d bytes, %d spilled, memory peak %d (bound %d)", len(data), m.fs.spilled.Load(), m.fs.memPeak.Load(), memBound)
}

// Many files, each with a few small writes apart from each other, past
// a memory bound of 1 MiB: the small spans spill too (each to a slot of
// its size), so memory stays at the bound without writers waiting for
// uploads, and every file reads back byte-identical before and after
// fsync.
func TestMountSpillSmallSpans(t *testing.T) {
	c, dir := shared(t)
	const memBound = 1 << 20
	mnt := t.TempDir()
	m := c.mount(t, Config{Root: "/", CacheDir: t.TempDir(), SpillMemory: memBound, SpillLimit: 64 << 20}, mnt)
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	const files, writes, size, stride = 48, 8, 12 << 10, 40 << 10
	want := make([][]byte, files)
	fds := make([]*os.File, files)
	paths := make([]string, files)
	for i := range fds {
		paths[i] = filepath.Join(mnt, filerPath(dir), fmt.Sprintf("small-%d", i))
		f, err := os.Create(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds[i] = f
		want[i] = make([]byte, (writes-1)*stride+size)
	}
	for w := range writes {
		for i, f := range fds {
			data := randBytes(size, uint64(1000*i+w))
			if _, err := f.WriteAt(data, int64(w*stride)); err != nil {
				t.Fatal(err)
			}
			copy(want[i][w*stride:], data)
		}
	}
	total := files * writes * size
	if m.fs.spilled.Load() == 0 {
		t.Fatalf("%d bytes in spans of %d written with a memory bound of %d, none spilled", total, size, memBound)
	}
	// A few writes past the bound at most (one per file writing at once).
	if peak := m.fs.memPeak.Load(); peak > memBound+64<<10 {
		t.Fatalf("buffered bytes in memory peaked at %d, bound %d", peak, memBound)
	}
	readBack := func(when string) {
		t.Helper()
		for i, p := range paths {
			m.fs.invalidate(m.fs.filerInoOf(t, p), 0)
			if got := mustRead(t, p); !bytes.Equal(got, want[i]) {
				t.Fatalf("%s: %s: read %d bytes, want %d, equal=%v", when, p, len(got), len(want[i]), bytes.Equal(got, want[i]))
			}
		}
	}
	readBack("before fsync")
	for _, f := range fds {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	readBack("after fsync")
	for i, f := range fds {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := c.readThroughFiler(t, filerPath(filepath.Join(dir, fmt.Sprintf("small-%d", i)))); !bytes.Equal(got, want[i]) {
			t.Fatalf("committed file %d: %d bytes, equal=%v", i, len(got), bytes.Equal(got, want[i]))
		}
	}
	if n := m.fs.spill.inUse(); n != 0 {
		t.Fatalf("%d spill slots still in use after fsync", n)
	}
	if m.fs.memBytes.Load() != 0 || m.fs.dirtyBytes.Load() != 0 {
		t.Fatalf("after close: %d bytes buffered, %d in memory", m.fs.dirtyBytes.Load(), m.fs.memBytes.Load())
	}
	t.Logf("wrote %d bytes in %d files, %d spilled, memory peak %d (bound %d)", total, files, m.fs.spilled.Load(), m.fs.memPeak.Load(), memBound)
}
