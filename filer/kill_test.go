package filer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// killAcks is what one writer had acknowledged: directories made and data
// commits, each at its own offset of the writer's file.
type killAcks struct {
	mu      sync.Mutex // guards the fields below
	dirs    []string
	commits []filer.Slice
	err     error // a refusal no retry explains
}

func (a *killAcks) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.dirs) + len(a.commits)
}

// TestFilerKeepsAcknowledgedAfterSIGKILL runs a real filer process on a new
// data directory (so its Raft log is the WAL), has writers commit
// mutations while it is killed with SIGKILL and restarted three times, and
// then checks that every acknowledged mutation is in the namespace.
func TestFilerKeepsAcknowledgedAfterSIGKILL(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	fp := c.Filers[0]
	if _, err := os.Stat(filepath.Join(fp.Dir, "raft", "wal", "wal-meta.db")); err != nil {
		t.Fatalf("new filer directory has no WAL: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fp.Dir, "raft", "raft.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("new filer directory has a raft.db: %v", err)
	}
	fc := filer.NewClient(c.FilerAddrs(), nil)
	defer fc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	top, err := fc.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "k", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}

	const writers = 4
	acks := make([]*killAcks, writers)
	files := make([]uint64, writers)
	for w := range writers {
		acks[w] = &killAcks{}
		res, err := fc.Apply(ctx, &filer.Create{Parent: top.Inode.Ino, Name: fmt.Sprintf("f%d", w), Mode: 0o644})
		if err != nil {
			t.Fatal(err)
		}
		files[w] = res.Inode.Ino
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := acks[w]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var op filer.Op
				name := fmt.Sprintf("w%d-%d", w, i)
				sl := filer.Slice{Off: uint64(i) * 4096, Len: 4096, Fid: fmt.Sprintf("9,%x%02x00000001", i+1, w)}
				if i%2 == 0 {
					op = &filer.Mkdir{Parent: top.Inode.Ino, Name: name, Mode: 0o755}
				} else {
					op = &filer.CommitSlices{Ino: files[w], Slices: []filer.Slice{sl}, OmitSlices: true}
				}
				// The client retries across the restart; a call that
				// still fails has an unknown outcome and is not checked.
				_, err := fc.Apply(ctx, op)
				var errno syscall.Errno
				switch {
				case err == nil:
					a.mu.Lock()
					if i%2 == 0 {
						a.dirs = append(a.dirs, name)
					} else {
						a.commits = append(a.commits, sl)
					}
					a.mu.Unlock()
				case errors.As(err, &errno):
					// Names and offsets are unique, and a retry of a
					// committed call gets its first answer: no refusal
					// is right.
					a.mu.Lock()
					a.err = fmt.Errorf("%s %+v: %w", op.OpType(), op, err)
					a.mu.Unlock()
					return
				}
			}
		}()
	}
	total := func() int {
		n := 0
		for _, a := range acks {
			n += a.count()
		}
		return n
	}
	for cycle := range 3 {
		want := total() + 40
		testutil.WaitFor(t, 3*time.Minute, fmt.Sprintf("cycle %d: 40 more acknowledged mutations", cycle), func() error {
			if n := total(); n < want {
				return fmt.Errorf("%d acknowledged, want %d", n, want)
			}
			return nil
		})
		fp.Kill()
		fp.Start(t)
		c.WaitFilerLeader(t)
	}
	want := total() + 20
	testutil.WaitFor(t, 3*time.Minute, "20 acknowledged mutations after the last restart", func() error {
		if n := total(); n < want {
			return fmt.Errorf("%d acknowledged, want %d", n, want)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	for w, a := range acks {
		if a.err != nil {
			t.Fatalf("writer %d: refused: %v", w, a.err)
		}
		for _, name := range a.dirs {
			if _, err := fc.Lookup(ctx, top.Inode.Ino, name); err != nil {
				t.Errorf("acknowledged mkdir %s is gone after SIGKILL: %v", name, err)
			}
		}
		got, err := fc.GetAttr(ctx, files[w])
		if err != nil {
			t.Fatal(err)
		}
		for _, sl := range a.commits {
			ext := filer.VisibleExtents(got.Slices, sl.Off, sl.Len)
			if len(ext) != 1 || ext[0].Fid != sl.Fid {
				t.Errorf("writer %d: acknowledged commit of %s at %d is gone after SIGKILL: %+v", w, sl.Fid, sl.Off, ext)
			}
		}
		t.Logf("writer %d: %d directories and %d data commits acknowledged, all present", w, len(a.dirs), len(a.commits))
	}
}
