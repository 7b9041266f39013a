package e2e

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// tinyFS mounts a tmpfs of the given size for the test and unmounts it at
// cleanup. It skips the test when mounting is not permitted here.
func tinyFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "cairn-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills a 4 MiB filesystem: writes fail with 507, never a 201
// for bytes that were not stored, and everything acknowledged before reads
// back, also after a SIGKILL and restart.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	dir := tinyFS(t, "4m")
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, VolumeDirs: []string{dir}})
	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[string][]byte{}
	full := 0
	var a testcluster.Assignment
	for i := 0; i < 400 && full < 5; i++ {
		testutil.WaitFor(t, 60*time.Second, "an assignable volume", func() (err error) {
			a, err = c.Assign("")
			return err
		})
		data := make([]byte, 64<<10)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		err := c.Put(a.URL, a.Fid, data)
		var he *testcluster.HTTPError
		switch {
		case err == nil:
			acked[a.Fid] = data
		case errors.As(err, &he) && he.Code == 507:
			full++
		default:
			t.Fatalf("write %d: want 201 or 507, got %v", i, err)
		}
	}
	if full == 0 {
		t.Fatalf("wrote %d needles of 64 KiB to a 4 MiB filesystem without a 507", len(acked))
	}
	if len(acked) < 10 {
		t.Fatalf("only %d writes succeeded before the disk was full", len(acked))
	}
	check := func(when string) {
		for fid, want := range acked {
			got, err := c.Get(c.Volumes[0].HTTP, fid)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: acknowledged needle %s: err=%v equal=%v", when, fid, err, bytes.Equal(got, want))
			}
		}
	}
	check("disk full")
	c.Volumes[0].Kill()
	c.Volumes[0].Start(t)
	c.WaitVolumesRegistered(t)
	check("after SIGKILL and restart on a full disk")
	t.Logf("%d writes acknowledged, %d refused with 507", len(acked), full)
}
