package errorfs

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs/memfs"
	"github.com/cairn-storage/cairn/internal/vfs/vfstest"
)

func TestConformancePassThrough(t *testing.T) {
	m := memfs.New()
	m.MkdirAll("/d", 0o755)
	vfstest.Test(t, Wrap(m, InjectorFunc(func(Op) error { return nil })), "/d")
}

func TestFailNthSync(t *testing.T) {
	e := Wrap(memfs.New(), FailNth(OpSync, 2, ErrIO))
	f, err := e.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i, wantErr := range []bool{false, true, false} {
		err := f.Sync()
		if (err != nil) != wantErr {
			t.Fatalf("sync %d: %v", i+1, err)
		}
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Fatalf("sync error %v is not EIO", err)
		}
	}
}

func TestSwitchMatchesPathAndKind(t *testing.T) {
	sw := NewSwitch(".dat", OpWrite)
	e := Wrap(memfs.New(), sw)
	dat, _ := e.OpenFile("/v.dat", os.O_CREATE|os.O_RDWR, 0o644)
	other, _ := e.OpenFile("/v.idx", os.O_CREATE|os.O_RDWR, 0o644)
	if _, err := dat.WriteAt([]byte("a"), 0); err != nil {
		t.Fatalf("disarmed: %v", err)
	}
	sw.Arm(ErrNoSpace)
	if _, err := dat.WriteAt([]byte("a"), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("armed write: %v", err)
	}
	if _, err := other.WriteAt([]byte("a"), 0); err != nil {
		t.Fatalf("other path: %v", err)
	}
	if err := dat.Sync(); err != nil {
		t.Fatalf("other kind: %v", err)
	}
	sw.Disarm()
	if _, err := dat.WriteAt([]byte("a"), 0); err != nil {
		t.Fatalf("after disarm: %v", err)
	}
	if sw.Hits() != 1 {
		t.Fatalf("hits = %d", sw.Hits())
	}
}

func TestShortWriteKeepsPrefix(t *testing.T) {
	m := memfs.New()
	e := Wrap(m, InjectorFunc(func(op Op) error {
		if op.Kind == OpWrite && op.Offset > 0 {
			return ShortWrite(3)
		}
		return nil
	}))
	f, _ := e.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	f.WriteAt([]byte("ab"), 0)
	n, err := f.WriteAt([]byte("cdefgh"), 2)
	if n != 3 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write = %d, %v", n, err)
	}
	b := make([]byte, 10)
	k, _ := f.ReadAt(b, 0)
	if string(b[:k]) != "abcde" {
		t.Fatalf("content %q", b[:k])
	}
}

func TestInjectorConcurrent(t *testing.T) {
	inj := FailNth(OpRead, 50, ErrIO)
	sw := NewSwitch("", OpRead)
	e := Wrap(memfs.New(), Any{inj, sw})
	f, _ := e.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	f.WriteAt([]byte("x"), 0)
	var mu sync.Mutex
	fails := 0
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 10 {
				if _, err := f.ReadAt(make([]byte, 1), 0); err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if fails != 1 {
		t.Fatalf("%d reads failed, want exactly 1", fails)
	}
	sw.Arm(ErrIO)
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("armed switch: %v", err)
	}
}

func TestShortWritevKeepsPrefix(t *testing.T) {
	m := memfs.New()
	e := Wrap(m, InjectorFunc(func(op Op) error {
		if op.Kind == OpWrite && op.Len == 6 {
			return ShortWrite(4)
		}
		return nil
	}))
	f, _ := e.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	n, err := f.WritevAt([][]byte{[]byte("ab"), nil, []byte("cd"), []byte("ef")}, 0)
	if n != 4 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short writev = %d, %v", n, err)
	}
	b := make([]byte, 10)
	k, _ := f.ReadAt(b, 0)
	if string(b[:k]) != "abcd" {
		t.Fatalf("content %q", b[:k])
	}
}
