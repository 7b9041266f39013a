package fuse

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/filer"
)

// filerPath is the filer path of p, a path in the shared mount.
func filerPath(p string) string { return strings.TrimPrefix(p, sharedDir) }

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSparseAndLarge(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const far = 5 << 30 // past 4 GiB
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), far); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() != far+4 {
		t.Fatalf("size %d, want %d", st.Size(), far+4)
	}
	buf := make([]byte, 8)
	if _, err := f.ReadAt(buf, far-4); err != nil || string(buf) != "\x00\x00\x00\x00tail" {
		t.Fatalf("read across the hole end: %q %v", buf, err)
	}
	hole := make([]byte, 1<<20)
	if _, err := f.ReadAt(hole, 1<<30); err != nil || !bytes.Equal(hole, make([]byte, 1<<20)) {
		t.Fatalf("hole does not read as zeros: %v", err)
	}
	if off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE); err != nil || off != 4 {
		t.Errorf("SEEK_HOLE from 0: %d %v, want 4", off, err)
	}
	if off, err := unix.Seek(int(f.Fd()), 5, unix.SEEK_DATA); err != nil || off != far {
		t.Errorf("SEEK_DATA from 5: %d %v, want %d", off, err, int64(far))
	}
}

func TestOpenFlags(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "f")
	mustWrite(t, p, []byte("hello world"))
	if _, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v, want EEXIST", err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("!"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, p); string(got) != "hello world!" {
		t.Fatalf("after O_APPEND: %q", got)
	}
	f, err = os.OpenFile(p, os.O_TRUNC|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	f.Close()
	if got := mustRead(t, p); string(got) != "x" {
		t.Fatalf("after O_TRUNC: %q", got)
	}
}

func TestTruncate(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "t")
	data := randBytes(100000, 1)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(data) // still buffered: truncate must keep what lies below
	if err := f.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8000); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, data[:5000]...), make([]byte, 3000)...)
	if got := mustRead(t, p); !bytes.Equal(got, want) {
		t.Fatalf("after truncate down and up: %d bytes, equal=%v", len(got), bytes.Equal(got, want))
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, want) {
		t.Fatalf("committed after truncate: %d bytes", len(got))
	}
}

func TestPunchHole(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "p")
	data := bytes.Repeat([]byte{7}, 64<<10)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(data)
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192); err != nil {
		t.Fatal(err)
	}
	copy(data[4096:4096+8192], make([]byte, 8192))
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after punching a hole: %v equal=%v", err, bytes.Equal(got, data))
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 1<<20 {
		t.Fatalf("fallocate mode 0 did not extend: %d", st.Size())
	}
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("collapse range: %v, want EOPNOTSUPP", err)
	}
}

func TestRename(t *testing.T) {
	_, dir := shared(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustWrite(t, a, []byte("A"))
	mustWrite(t, b, []byte("B"))
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, b); string(got) != "A" {
		t.Fatalf("rename over existing: %q", got)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Fatalf("old name still there: %v", err)
	}
	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	os.MkdirAll(filepath.Join(d1, "sub"), 0o755)
	os.Mkdir(d2, 0o755)
	mustWrite(t, filepath.Join(d1, "sub", "f"), []byte("deep"))
	if err := os.Rename(filepath.Join(d1, "sub"), filepath.Join(d2, "moved")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(d2, "moved", "f")); string(got) != "deep" {
		t.Fatalf("directory moved across parents: %q", got)
	}
	if err := os.Rename(d2, filepath.Join(d2, "moved", "x")); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("moving a directory into itself: %v, want EINVAL", err)
	}
	mustWrite(t, a, []byte("A2"))
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("RENAME_NOREPLACE over existing: %v", err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, a)) != "A" || string(mustRead(t, b)) != "A2" {
		t.Fatal("RENAME_EXCHANGE did not swap")
	}
}

func TestUnlinkWhileOpen(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "u")
	mustWrite(t, p, []byte("still here"))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("STILL"), 0)
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "STILL here" {
		t.Fatalf("read after unlink: %q %v", buf, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after unlink: %v", err)
	}
	f.Close()
	ctx := context.Background()
	waitOrphansGone(t, c, ctx)
}

// waitOrphansGone checks that the last close freed the orphan.
func waitOrphansGone(t *testing.T, c *cluster, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var orphans []uint64
		if err := c.client.Read(ctx, pbRead("orphans"), &orphans); err != nil {
			t.Fatal(err)
		}
		if len(orphans) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphans left after the last close: %v", orphans)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLinksAndSymlinks(t *testing.T) {
	_, dir := shared(t)
	p, l, s := filepath.Join(dir, "f"), filepath.Join(dir, "l"), filepath.Join(dir, "s")
	mustWrite(t, p, []byte("x"))
	if err := os.Link(p, l); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Nlink != 2 {
		t.Fatalf("nlink %d, want 2", st.Nlink)
	}
	os.Remove(l)
	syscall.Stat(p, &st)
	if st.Nlink != 1 {
		t.Fatalf("nlink after unlink %d, want 1", st.Nlink)
	}
	if err := os.Symlink("f", s); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(s); err != nil || tgt != "f" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	if got := mustRead(t, s); string(got) != "x" {
		t.Fatalf("through symlink: %q", got)
	}
}

func TestAttrs(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "a")
	mustWrite(t, p, []byte("x"))
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{{Sec: 1000, Nsec: 123456789}, {Sec: 2000, Nsec: 987654321}}
	if err := unix.UtimesNano(p, ts); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("mode %o uid %d gid %d", st.Mode, st.Uid, st.Gid)
	}
	if st.Atim != ts[0] || st.Mtim != ts[1] {
		t.Fatalf("times %v %v, want %v", st.Atim, st.Mtim, ts)
	}
	// UTIME_NOW
	before := time.Now().Add(-time.Second)
	if err := unix.UtimesNano(p, []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}); err != nil {
		t.Fatal(err)
	}
	unix.Stat(p, &st)
	if time.Unix(st.Mtim.Unix()).Before(before) {
		t.Fatalf("UTIME_NOW mtime %v", st.Mtim)
	}
}

func TestXattrs(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "x")
	mustWrite(t, p, nil)
	if err := unix.Setxattr(p, "user.a", []byte("1"), unix.XATTR_CREATE); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.a", []byte("2"), unix.XATTR_CREATE); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("XATTR_CREATE on existing: %v", err)
	}
	if err := unix.Setxattr(p, "user.b", []byte("2"), unix.XATTR_REPLACE); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("XATTR_REPLACE on missing: %v", err)
	}
	buf := make([]byte, 0)
	if n, err := unix.Getxattr(p, "user.a", buf); err != nil || n != 1 {
		t.Fatalf("size query: %d %v", n, err)
	}
	if err := unix.Removexattr(p, "user.a"); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(p, "user.a", make([]byte, 8)); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("after remove: %v", err)
	}
}

func TestMmapShared(t *testing.T) {
	_, dir := shared(t)
	p := filepath.Join(dir, "m")
	mustWrite(t, p, make([]byte, 8192))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// This process serves the mount it maps. A page fault on the mapping
	// blocks its thread in the kernel while Go believes the goroutine is
	// running; a garbage collection starting then would wait forever for
	// that goroutine, and the stopped world could never answer the fault.
	// No collection may start while the mapping is touched.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	mem, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(mem[100:], "mapped")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	unix.Munmap(mem)
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := make([]byte, 6)
	if _, err := g.ReadAt(buf, 100); err != nil || string(buf) != "mapped" {
		t.Fatalf("read back after msync: %q %v", buf, err)
	}
}

func TestReaddirStable(t *testing.T) {
	_, dir := shared(t)
	for i := range 50 {
		mustWrite(t, filepath.Join(dir, "f"+string(rune('A'+i%26))+string(rune('a'+i/26))), nil)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	first, err := d.Readdirnames(10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		mustWrite(t, filepath.Join(dir, "new"+string(rune('a'+i))), nil)
	}
	rest, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range append(first, rest...) {
		if seen[n] {
			t.Fatalf("entry %q listed twice", n)
		}
		seen[n] = true
	}
	if len(seen) != 50 {
		t.Fatalf("listed %d entries, want the 50 present at open", len(seen))
	}
}

func TestFsyncDurable(t *testing.T) {
	c, dir := shared(t)
	p := filepath.Join(dir, "durable")
	data := randBytes(10<<20+12345, 7) // several needles, a short tail
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	// Overwrite a piece in the middle, spanning a needle boundary.
	patch := randBytes(10000, 8)
	f.WriteAt(patch, 4<<20-5000)
	copy(data[4<<20-5000:], patch)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := c.readThroughFiler(t, filerPath(p)); !bytes.Equal(got, data) {
		t.Fatalf("committed content differs from what was written (%d vs %d bytes)", len(got), len(data))
	}
}

func TestStatfsQuota(t *testing.T) {
	c, dir := shared(t)
	ctx := context.Background()
	in, err := c.client.Resolve(ctx, filerPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.Apply(ctx, &filer.SetQuota{Ino: in.Ino, MaxBytes: 400 << 20, MaxInodes: 1000}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "f"), make([]byte, 8192))
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bsize != 4096 || st.Blocks != 400<<20/4096 || st.Bfree != (400<<20-8192)/4096 || st.Files != 1000 || st.Ffree != 998 {
		t.Fatalf("statfs: %+v", st)
	}
}

func TestMknod(t *testing.T) {
	_, dir := shared(t)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("mkfifo: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Mknod(filepath.Join(dir, "reg"), unix.S_IFREG|0o644, 0); err != nil {
		t.Fatal(err)
	}
}

// TestTmpfile: a file opened with O_TMPFILE is in no directory until
// linkat gives it a name, and then keeps what was written to it; one
// never named is freed at its last close.
func TestTmpfile(t *testing.T) {
	c, dir := shared(t)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR, 0o640)
	if err != nil {
		t.Fatalf("O_TMPFILE: %v", err)
	}
	if _, err := unix.Pwrite(fd, []byte("kept by name"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fsync(fd); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Nlink != 0 || st.Mode&0o777 != 0o640 {
		t.Fatalf("fstat: %+v %v", st, err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("the directory lists %v (%v)", ents, err)
	}
	named := filepath.Join(dir, "named")
	if err := unix.Linkat(fd, "", unix.AT_FDCWD, named, unix.AT_EMPTY_PATH); err != nil {
		t.Fatalf("linkat: %v", err)
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, named); string(got) != "kept by name" {
		t.Fatalf("named tmpfile reads %q", got)
	}
	if got := c.readThroughFiler(t, filerPath(named)); string(got) != "kept by name" {
		t.Fatalf("the filer holds %q", got)
	}
	if err := unix.Stat(named, &st); err != nil || st.Nlink != 1 {
		t.Fatalf("stat of the named tmpfile: nlink %d, %v", st.Nlink, err)
	}

	fd, err = unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, []byte("scratch"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(fd, "", unix.AT_FDCWD, filepath.Join(dir, "never"), unix.AT_EMPTY_PATH); err == nil {
		t.Fatal("linkat of an O_EXCL tmpfile succeeded")
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	waitOrphansGone(t, c, context.Background())
}
