package shell

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestVolumeFixReplication is the acceptance test of re-replication: three
// volume servers, replication 001, a few hundred needles; one server is
// killed with SIGKILL and its directory wiped for good. volume.list shows
// the volumes it held as under-replicated, volume.fix.replication -apply
// copies them to the remaining servers, every needle then reads back
// byte-identical from every replica, and the repaired volumes take writes.
func TestVolumeFixReplication(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Replication: "001"})
	rng := rand.New(rand.NewPCG(1, 2))
	var w written
	for i := range 4 { // a few collections: several volumes on every pair of servers
		writeNeedles(t, c, &w, fmt.Sprintf("fix%d", i), 75, rng)
	}

	victim, lost, st := loseBusiestServer(t, c)

	// volume.list marks them once the master counts the server dead.
	var list VolumeListJSON
	testutil.WaitFor(t, 60*time.Second, "volume.list to show the under-replicated volumes", func() error {
		jsonOn(t, c, &list, "volume.list")
		var ids []uint32
		for _, u := range list.UnderReplicated {
			ids = append(ids, u.ID)
			if !slices.Contains(u.Missing, victim.HTTP) || len(u.Live) != 1 || u.Wanted != 2 {
				return fmt.Errorf("volume %d: %+v", u.ID, u)
			}
		}
		if len(ids) != len(lost) {
			return fmt.Errorf("under-replicated %v, want the %d volumes of %s", ids, len(lost), victim.HTTP)
		}
		return nil
	})
	text, _, _ := shellOn(t, c, "-c", "volume.list")
	if n := strings.Count(text, "UNDER-REPLICATED volume"); n != len(lost) {
		t.Errorf("volume.list text marks %d volumes under-replicated, want %d:\n%s", n, len(lost), text)
	}

	// Within the grace period nothing is planned; past it, one copy per volume.
	var plan FixReplicationJSON
	jsonOn(t, c, &plan, "volume.fix.replication -grace 1h")
	if len(plan.Plan) != 0 || len(plan.Volumes) != len(lost) {
		t.Fatalf("within the grace period: %+v, want the volumes listed and no plan", plan)
	}
	testutil.WaitFor(t, 30*time.Second, "a plan past a 1s grace period", func() error {
		jsonOn(t, c, &plan, "volume.fix.replication -grace 1s")
		if len(plan.Plan) != len(lost) {
			return fmt.Errorf("%d steps, want %d: %+v", len(plan.Plan), len(lost), plan)
		}
		return nil
	})
	for _, s := range plan.Plan {
		if !lost[s.Volume] || s.Drop != victim.HTTP || !s.DropDead || s.Target == "" || s.Target == victim.HTTP || s.Source == s.Target {
			t.Fatalf("bad step %+v", s)
		}
	}
	// Planning changed nothing.
	if _, st2, _ := c.LeaderStatus(); !sameVolumes(st, st2) {
		t.Fatal("a plan without -apply changed the replica sets")
	}

	// Ctrl-C after the first step: the command stops at that boundary,
	// says so, and leaves the remaining volumes as they were.
	out, errs, code := shellInterrupted(t, c, "] done in", "-c", "volume.fix.replication -grace 1s -apply")
	if code != 1 || !strings.Contains(errs, fmt.Sprintf("interrupted after 1 of %d steps", len(lost))) {
		t.Fatalf("interrupted run: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	jsonOn(t, c, &plan, "volume.fix.replication -grace 1s")
	if len(plan.Plan) != len(lost)-1 {
		t.Fatalf("after an interrupted run %d steps remain, want %d: %+v", len(plan.Plan), len(lost)-1, plan.Plan)
	}

	start := time.Now()
	var applied FixReplicationJSON
	progress := jsonOn(t, c, &applied, "volume.fix.replication -grace 1s -apply")
	t.Logf("fix.replication -apply of %d volumes took %v", len(applied.Plan), time.Since(start).Round(time.Millisecond))
	if !applied.Applied || len(applied.Plan) != len(lost)-1 {
		t.Fatalf("applied: %+v", applied)
	}
	for _, s := range applied.Plan {
		if !s.Done || s.Error != "" {
			t.Errorf("step %+v not done", s)
		}
	}
	if !strings.Contains(progress, fmt.Sprintf("[%d/%d]", len(lost)-1, len(lost)-1)) {
		t.Errorf("no progress on stderr:\n%s", progress)
	}

	waitWritable(t, c, lost, victim.HTTP)
	jsonOn(t, c, &list, "volume.list")
	if len(list.UnderReplicated) != 0 {
		t.Errorf("still under-replicated after the repair: %+v", list.UnderReplicated)
	}
	checkAllReplicas(t, c, &w)
	for id := range lost {
		writeTo(t, c, id, &w)
	}
	checkAllReplicas(t, c, &w)

	// Running it again finds nothing to do.
	jsonOn(t, c, &plan, "volume.fix.replication -grace 1s -apply")
	if len(plan.Plan) != 0 {
		t.Fatalf("second run planned %+v", plan.Plan)
	}
	out, _, _ = shellOn(t, c, "-c", "volume.fix.replication")
	if !strings.Contains(out, "every volume has its full replica count") {
		t.Errorf("text output after the repair:\n%s", out)
	}
	if _, errs, code := shellOn(t, c, "-c", "volume.fix.replication -volumeId 9999"); code != 1 || !strings.Contains(errs, "volume 9999 does not exist") {
		t.Errorf("unknown volume: exit %d, %s", code, errs)
	}
}

// sameVolumes reports whether two statuses list the same replica sets.
func sameVolumes(a, b *testcluster.Status) bool {
	if a == nil || b == nil || len(a.Volumes) != len(b.Volumes) {
		return false
	}
	sets := map[uint32][]string{}
	for _, v := range a.Volumes {
		sets[v.ID] = slices.Sorted(slices.Values(v.Replicas))
	}
	for _, v := range b.Volumes {
		if !slices.Equal(sets[v.ID], slices.Sorted(slices.Values(v.Replicas))) {
			return false
		}
	}
	return true
}

// shellInterrupted runs the shell on c and cancels its context (Ctrl-C)
// as soon as stderr contains marker.
func shellInterrupted(t *testing.T, c *testcluster.Cluster, marker string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	errw := &watchWriter{marker: marker, hit: cancel}
	full := append([]string{"--master", c.Masters[0].HTTP, "--filer", ""}, args...)
	code = Main(ctx, full, strings.NewReader(""), &out, errw)
	return out.String(), errw.String(), code
}

// watchWriter calls hit once what was written contains marker.
type watchWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	hit    func()
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.hit != nil && strings.Contains(w.buf.String(), w.marker) {
		w.hit()
		w.hit = nil
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestVolumeFixReplicationKilledDuringCopy: the target of a copy is killed
// with SIGKILL while the copy's temporary file is being written. After a
// restart it holds no trace of the copy (no volume, no temporary file),
// the master never listed it, and running the command again completes the
// repair with every needle intact.
func TestVolumeFixReplicationKilledDuringCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Replication: "001", VolumeSizeLimitMB: 256})
	rng := rand.New(rand.NewPCG(11, 12))
	var w written
	coll := unique("crashcopy")
	for range 40 { // 80 MiB: a copy that takes a while
		var a testcluster.Assignment
		testutil.WaitFor(t, 60*time.Second, "a file id", func() (err error) {
			a, err = c.Assign("replication=001&collection=" + coll)
			return err
		})
		d := make([]byte, 2<<20)
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		if err := c.Put(a.URL, a.Fid, d); err != nil {
			t.Fatal(err)
		}
		w.add(a.Fid, d)
	}
	_, st, err := c.LeaderStatus()
	if err != nil {
		t.Fatal(err)
	}
	var vol *struct {
		ID       uint32   `json:"id"`
		Replicas []string `json:"replicas"`
		Writable bool     `json:"writable"`
	}
	for i := range st.Volumes {
		vol = &st.Volumes[i]
	}
	if len(st.Volumes) != 1 {
		t.Fatalf("want one volume, got %+v", st.Volumes)
	}
	byURL := map[string]*testcluster.Proc{}
	for _, p := range c.Volumes {
		byURL[p.HTTP] = p
	}
	victim := byURL[vol.Replicas[0]]
	var target *testcluster.Proc
	for _, p := range c.Volumes {
		if !slices.Contains(vol.Replicas, p.HTTP) {
			target = p
		}
	}
	victim.Kill()
	if err := os.RemoveAll(victim.Dir); err != nil {
		t.Fatal(err)
	}
	var plan FixReplicationJSON
	testutil.WaitFor(t, 60*time.Second, "a plan", func() error {
		jsonOn(t, c, &plan, "volume.fix.replication -grace 1s")
		if len(plan.Plan) != 1 || plan.Plan[0].Target != target.HTTP {
			return fmt.Errorf("plan %+v, want one copy to %s", plan.Plan, target.HTTP)
		}
		return nil
	})

	// Kill the target as soon as the copy's temporary file exists.
	killed := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			names, _ := filepath.Glob(filepath.Join(target.Dir, "*.tmp"))
			if len(names) > 0 {
				target.Kill()
				killed <- names[0]
				return
			}
			time.Sleep(time.Millisecond) // polling the directory, not waiting for time to pass
		}
		killed <- ""
	}()
	_, errs, code := shellOn(t, c, "-c", "volume.fix.replication -grace 1s -apply")
	tmp := <-killed
	if tmp == "" {
		t.Fatalf("the copy's temporary file never appeared in %s (exit %d, %s)", target.Dir, code, errs)
	}
	if code != 1 || !strings.Contains(errs, "failed") {
		t.Fatalf("a copy whose target died: exit %d\n%s", code, errs)
	}
	t.Logf("killed %s while it wrote %s", target.HTTP, filepath.Base(tmp))
	if _, st, err := c.LeaderStatus(); err != nil || slices.Contains(st.Volumes[0].Replicas, target.HTTP) {
		t.Fatalf("the master lists the killed copy: %+v %v", st, err)
	}

	target.Start(t)
	c.WaitVolumesRegistered(t)
	if names, _ := filepath.Glob(filepath.Join(target.Dir, "*")); len(names) != 0 {
		t.Fatalf("after the restart %s still holds %v", target.Dir, names)
	}
	var list VolumeListJSON
	jsonOn(t, c, &list, "volume.list")
	for _, s := range list.DataCenters[0].Racks[0].Servers {
		if s.URL == target.HTTP && len(s.Volumes) != 0 {
			t.Fatalf("%s reports volumes after the restart: %+v", s.URL, s.Volumes)
		}
	}

	var applied FixReplicationJSON
	jsonOn(t, c, &applied, "volume.fix.replication -grace 1s -apply")
	if len(applied.Plan) != 1 || !applied.Plan[0].Done {
		t.Fatalf("second run: %+v", applied)
	}
	waitWritable(t, c, map[uint32]bool{vol.ID: true}, victim.HTTP)
	checkAllReplicas(t, c, &w)
}
