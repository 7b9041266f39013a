package mountsvc

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cairn-storage/cairn/fuse"
)

// fakeFS stands in for a FUSE mount.
type fakeFS struct {
	gone chan struct{}
	once sync.Once
}

func (f *fakeFS) Wait() error                    { <-f.gone; return nil }
func (f *fakeFS) FlushAll(context.Context) error { return nil }
func (f *fakeFS) close()                         { f.once.Do(func() { close(f.gone) }) }

type fakeKernel struct {
	mu     sync.Mutex
	mounts map[string]*fakeFS
	calls  int
}

func (k *fakeKernel) config(state string) Config {
	return Config{
		Socket: "unused", Filers: []string{"f:8888"}, StateFile: state,
		Mounter: func(_ context.Context, c fuse.Config) (Mounted, error) {
			k.mu.Lock()
			defer k.mu.Unlock()
			if c.Root == "/csi/missing" {
				return nil, syscall.ENOENT
			}
			k.calls++
			f := &fakeFS{gone: make(chan struct{})}
			k.mounts[c.Dir] = f
			return f, nil
		},
		Unmounter: func(dir string) error {
			k.mu.Lock()
			defer k.mu.Unlock()
			if f := k.mounts[dir]; f != nil {
				f.close()
				delete(k.mounts, dir)
			}
			return nil
		},
	}
}

func TestServiceMountsAndRestores(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "mounts.json")
	k := &fakeKernel{mounts: map[string]*fakeFS{}}
	s := New(k.config(state))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx := context.Background()
	a := Mount{VolumeID: "a", Root: "/csi/a", Dir: filepath.Join(dir, "sa")}

	if r, err := s.Mount(ctx, a); err != nil || r.Already {
		t.Fatalf("first mount: %v %v", r, err)
	}
	if r, err := s.Mount(ctx, a); err != nil || !r.Already {
		t.Fatalf("second mount of the same volume at the same place: %v %v, want Already", r, err)
	}
	other := a
	other.Dir = filepath.Join(dir, "elsewhere")
	if _, err := s.Mount(ctx, other); ErrorCode(err) != CodeConflict {
		t.Fatalf("the same volume at a second place: %v, want conflict (one mount per volume per node)", err)
	}
	ro := a
	ro.ReadOnly = true
	if _, err := s.Mount(ctx, ro); ErrorCode(err) != CodeConflict {
		t.Fatalf("the same place read-only: %v, want conflict", err)
	}
	if _, err := s.Mount(ctx, Mount{VolumeID: "m", Root: "/csi/missing", Dir: filepath.Join(dir, "sm")}); ErrorCode(err) != CodeNotFound {
		t.Fatalf("missing volume: %v, want not_found", err)
	}
	if _, err := s.Mount(ctx, Mount{VolumeID: "x", Root: "/csi/x", Dir: "relative"}); ErrorCode(err) != CodeInvalid {
		t.Fatalf("relative dir: %v, want invalid", err)
	}
	b := Mount{VolumeID: "b", Root: "/csi/b", Dir: filepath.Join(dir, "sb"), Replication: "001"}
	if _, err := s.Mount(ctx, b); err != nil {
		t.Fatal(err)
	}

	// A new service (after a restart) mounts both again from the state file.
	k2 := &fakeKernel{mounts: map[string]*fakeFS{}}
	s2 := New(k2.config(state))
	s2.Restore(ctx)
	got := s2.List()
	if len(got) != 2 || got[0].Mount != a || got[1].Mount != b || !got[0].Alive || k2.calls != 2 {
		t.Fatalf("restored %+v (%d mounts made), want a and b", got, k2.calls)
	}

	// Unmount forgets it, also across restarts; unmounting twice is fine.
	for range 2 {
		if _, err := s2.Unmount(ctx, a.Dir); err != nil {
			t.Fatal(err)
		}
	}
	s3 := New((&fakeKernel{mounts: map[string]*fakeFS{}}).config(state))
	s3.Restore(ctx)
	if got := s3.List(); len(got) != 1 || got[0].Mount != b {
		t.Fatalf("after unmounting a, a restart restores %+v, want only b", got)
	}

	// Unmounted from outside: forgotten.
	k2.mu.Lock()
	k2.mounts[b.Dir].close()
	k2.mu.Unlock()
	for i := 0; len(s2.List()) != 0; i++ {
		if i > 1000 {
			t.Fatalf("still listed after an outside unmount: %+v", s2.List())
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e6}, nil)
	}
	// The record is rewritten under opMu after the entry went: wait for
	// it, so that the temporary directory can be removed.
	s2.opMu.Lock()
	s2.opMu.Unlock()
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
}

func TestClientOverSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	k := &fakeKernel{mounts: map[string]*fakeFS{}}
	s := New(k.config(""))
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	if _, err := listenUnix(sock); err == nil {
		t.Fatal("a second service could listen on a live socket")
	}
	c := NewClient(sock)
	defer c.Close()
	ctx := context.Background()
	m := Mount{VolumeID: "v", Root: "/csi/v", Dir: filepath.Join(dir, "s")}
	if _, err := c.Mount(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mount(ctx, Mount{VolumeID: "v", Root: "/csi/v", Dir: filepath.Join(dir, "t")}); ErrorCode(err) != CodeConflict {
		t.Fatalf("conflict over the socket: %v", err)
	}
	l, err := c.List(ctx)
	if err != nil || len(l) != 1 || l[0].Mount != m {
		t.Fatalf("List = %v, %v", l, err)
	}
	if r, err := c.Unmount(ctx, m.Dir); err != nil || !r.Was {
		t.Fatalf("Unmount = %v, %v", r, err)
	}
	if _, err := NewClient(filepath.Join(dir, "nobody.sock")).List(ctx); ErrorCode(err) != CodeUnavailable {
		t.Fatalf("no service: %v, want unavailable", err)
	}
}
