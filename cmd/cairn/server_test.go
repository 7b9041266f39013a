package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testutil"
)

func TestServerRejectsBadCacheFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mount", t.TempDir(), "--cache-memory-mb", "0"},
		{"--mount", t.TempDir(), "--cache-max-mb", "2"},
		{"--cache-dir", t.TempDir()},
	} {
		var stderr strings.Builder
		dir := t.TempDir()
		full := append([]string{"--dir", dir}, args...)
		code := runServer(t.Context(), full, io.Discard, &stderr)
		flag := args[len(args)-2]
		if code == 0 || !strings.Contains(stderr.String(), flag) {
			t.Errorf("%v: exit %d, %q; want a failure naming %s", args, code, stderr.String(), flag)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%v: refused, but created %d entries in --dir", args, len(ents))
		}
	}
}

// cairn server --mount takes the mount's cache flags: with --cache-dir
// and a 1 MiB memory bound, writing 12 MiB spills to an unlinked file in
// the cache directory (the default bound of 64 MiB would not), and the
// file reads back what was written.
func TestServerMountCacheFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	const mport, vport, fport = 9633, 8380, 9188
	ip := testutil.LoopbackIP(t, mport, mport+10000, mport+20000, vport, vport+10000, fport, fport+10000, fport+20000)
	data, mnt, cacheDir := t.TempDir(), t.TempDir(), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runServer(ctx, []string{"--dir", data, "--mount", mnt, "--ip", ip,
			"--master.port", fmt.Sprint(mport), "--volume.port", fmt.Sprint(vport), "--filer.port", fmt.Sprint(fport),
			"--cache-dir", cacheDir, "--cache-memory-mb", "1", "--cache-max-mb", "64"}, &stdout, &stderr)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("server exited %d after its context ended; stderr:\n%s", code, stderr.String())
			}
		case <-time.After(2 * time.Minute):
			t.Errorf("server did not stop within 2 minutes of its context ending")
		}
	}
	t.Cleanup(stop)
	testutil.WaitFor(t, 2*time.Minute, "the server's mount", func() error {
		select {
		case code := <-done:
			t.Fatalf("server exited %d before mounting; stderr:\n%s", code, stderr.String())
		default:
		}
		if !strings.Contains(stdout.String(), "mounted the namespace at "+mnt) {
			return fmt.Errorf("not mounted yet")
		}
		return nil
	})

	want := make([]byte, 12<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	f, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := 0; off < len(want); off += 1 << 20 {
		if _, err := f.Write(want[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	// The spill file: open in this process, unlinked, in the cache dir,
	// grown past zero by the spans moved out of memory.
	spill := spillFileIn(t, cacheDir)
	if spill == "" {
		t.Fatalf("no file of this process is open in --cache-dir %s", cacheDir)
	}
	st, err := os.Stat(spill)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		t.Fatalf("spill file %s is empty after 12 MiB written; want spilled bytes with --cache-memory-mb 1", spill)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), equal=%v", len(got), err, bytes.Equal(got, want))
	}
	stop()
}

// spillFileIn returns the /proc/self/fd link of a file this process has
// open in dir, "" if none.
func spillFileIn(t *testing.T, dir string) string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join("/proc/self/fd", e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
			return p
		}
	}
	return ""
}
