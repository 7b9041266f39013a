package memfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/vfstest"
)

func TestConformance(t *testing.T) {
	m := New()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	vfstest.Test(t, m, "/d")
}

func create(t *testing.T, m vfs.FS, name, content string, sync bool) vfs.File {
	t.Helper()
	f, err := m.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func content(t *testing.T, m vfs.FS, name string) (string, bool) {
	t.Helper()
	f, err := m.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, _ := f.Size()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return string(b), true
}

func newWithDir(t *testing.T) *FS {
	m := New()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSyncedFileWithoutDirSyncIsLost(t *testing.T) {
	m := newWithDir(t)
	create(t, m, "/d/f", "data", true)
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/f"); ok {
		t.Fatal("file survived a crash although its directory was never synced")
	}
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	if got, ok := content(t, m.CrashClone(CrashOptions{}), "/d/f"); !ok || got != "data" {
		t.Fatalf("after SyncDir: %q, %v", got, ok)
	}
}

func TestUnsyncedDirectoryIsLost(t *testing.T) {
	m := New()
	if err := m.MkdirAll("/a/b", 0o755); err != nil {
		t.Fatal(err)
	}
	create(t, m, "/a/b/f", "x", true)
	m.SyncDir("/a/b")
	m.SyncDir("/a")
	c := m.CrashClone(CrashOptions{})
	if _, err := c.Stat("/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/a survived without syncing /: %v", err)
	}
	m.SyncDir("/")
	if got, ok := content(t, m.CrashClone(CrashOptions{}), "/a/b/f"); !ok || got != "x" {
		t.Fatalf("after syncing every parent: %q %v", got, ok)
	}
}

func TestUnsyncedDataIsLost(t *testing.T) {
	m := newWithDir(t)
	f := create(t, m, "/d/f", "synced", true)
	m.SyncDir("/d")
	f.WriteAt([]byte("-more"), 6)
	f.WriteAt([]byte("S"), 0)
	if got, _ := content(t, m, "/d/f"); got != "Synced-more" {
		t.Fatalf("live content %q", got)
	}
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/f"); got != "synced" {
		t.Fatalf("after crash %q, want the synced content", got)
	}
}

func TestTornAppendKeepsPrefix(t *testing.T) {
	m := newWithDir(t)
	f := create(t, m, "/d/f", "base", true)
	m.SyncDir("/d")
	f.WriteAt([]byte("0123456789"), 4)
	seen := map[int]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		got, _ := content(t, m.CrashClone(CrashOptions{Rand: r}), "/d/f")
		if want := "base0123456789"; !bytes.HasPrefix([]byte(want), []byte(got)) || len(got) < 4 {
			t.Fatalf("torn content %q is not a prefix of %q at least the synced part", got, want)
		}
		seen[len(got)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("torn lengths not random: %v", seen)
	}
}

func TestRenameAndRemoveNeedDirSync(t *testing.T) {
	m := newWithDir(t)
	create(t, m, "/d/old", "A", true)
	create(t, m, "/d/tmp", "B", true)
	m.SyncDir("/d")
	if err := m.Rename("/d/tmp", "/d/old"); err != nil {
		t.Fatal(err)
	}
	c := m.CrashClone(CrashOptions{})
	if got, _ := content(t, c, "/d/old"); got != "A" {
		t.Fatalf("rename durable before SyncDir: old=%q", got)
	}
	if _, ok := content(t, c, "/d/tmp"); !ok {
		t.Fatal("tmp gone before SyncDir")
	}
	m.SyncDir("/d")
	c = m.CrashClone(CrashOptions{})
	if got, _ := content(t, c, "/d/old"); got != "B" {
		t.Fatalf("after SyncDir old=%q", got)
	}
	if _, ok := content(t, c, "/d/tmp"); ok {
		t.Fatal("tmp survived the synced rename")
	}
	if err := m.Remove("/d/old"); err != nil {
		t.Fatal(err)
	}
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/old"); !ok {
		t.Fatal("remove durable before SyncDir")
	}
	m.SyncDir("/d")
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/old"); ok {
		t.Fatal("removed file survived after SyncDir")
	}
}

func TestTruncateNeedsSync(t *testing.T) {
	m := newWithDir(t)
	f := create(t, m, "/d/f", "0123456789", true)
	m.SyncDir("/d")
	f.Truncate(2)
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/f"); got != "0123456789" {
		t.Fatalf("unsynced truncate survived: %q", got)
	}
	f.Sync()
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/f"); got != "01" {
		t.Fatalf("synced truncate lost: %q", got)
	}
}

func TestOpenHandleSurvivesRemove(t *testing.T) {
	m := newWithDir(t)
	f := create(t, m, "/d/f", "keep", true)
	m.Remove("/d/f")
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "keep" {
		t.Fatalf("read via handle after remove: %q %v", b, err)
	}
	f.Close()
	if _, err := f.ReadAt(b, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestCapacity(t *testing.T) {
	m := newWithDir(t)
	m.SetCapacity(10)
	f := create(t, m, "/d/f", "12345678", false)
	if n, _ := m.FreeBytes("/d"); n != 2 {
		t.Fatalf("FreeBytes = %d, want 2", n)
	}
	if _, err := f.WriteAt([]byte("abc"), 8); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past capacity: %v, want ENOSPC", err)
	}
	if got, _ := content(t, m, "/d/f"); got != "12345678" {
		t.Fatalf("failed write changed content: %q", got)
	}
	if _, err := f.WriteAt([]byte("XY"), 0); err != nil {
		t.Fatalf("overwrite within size: %v", err)
	}
	m.SetCapacity(0)
	if _, err := f.WriteAt([]byte("abc"), 8); err != nil {
		t.Fatalf("write after lifting capacity: %v", err)
	}
	if n, _ := m.FreeBytes("/d"); n != Unlimited {
		t.Fatalf("FreeBytes unlimited = %d", n)
	}
}

func TestReadOnlyHandle(t *testing.T) {
	m := newWithDir(t)
	create(t, m, "/d/f", "x", true).Close()
	f, err := m.OpenFile("/d/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("y"), 0); err == nil {
		t.Fatal("write on read-only handle succeeded")
	}
}
