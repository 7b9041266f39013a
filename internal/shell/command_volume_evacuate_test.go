package shell

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testcluster"
)

// TestVolumeEvacuate empties one of three volume servers while a writer
// keeps writing: every replica leaves the server (its files too), and every
// needle acknowledged before or during the evacuation reads back from every
// replica.
func TestVolumeEvacuate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Replication: "001"})
	rng := rand.New(rand.NewPCG(3, 4))
	var w written
	for i := range 3 {
		writeNeedles(t, c, &w, fmt.Sprintf("evac%d", i), 40, rng)
	}
	_, st, err := c.LeaderStatus()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, v := range st.Volumes {
		for _, r := range v.Replicas {
			count[r]++
		}
	}
	victim := c.Volumes[0].HTTP
	for _, p := range c.Volumes {
		if count[p.HTTP] > count[victim] {
			victim = p.HTTP
		}
	}
	if count[victim] == 0 {
		t.Fatal("no replicas anywhere")
	}

	// The plan alone changes nothing; -apply without -y (no terminal) refuses.
	var plan EvacuateJSON
	jsonOn(t, c, &plan, "volume.evacuate -server "+victim)
	if len(plan.Plan) != count[victim] || plan.Applied {
		t.Fatalf("plan %+v, want %d steps", plan, count[victim])
	}
	for _, s := range plan.Plan {
		if s.Drop != victim || s.DropDead || s.Target == "" || s.Target == victim {
			t.Fatalf("bad step %+v", s)
		}
	}
	_, errs, code := shellOn(t, c, "-c", "volume.evacuate -server "+victim+" -apply")
	if code != 1 || !strings.Contains(errs, "not confirmed") {
		t.Fatalf("-apply without -y: exit %d, %s", code, errs)
	}
	if _, st2, _ := c.LeaderStatus(); !sameVolumes(st, st2) {
		t.Fatal("an unconfirmed evacuate or bad input changed the replica sets")
	}
	for cmd, want := range map[string]string{
		"volume.evacuate -server 127.0.0.1:1 -apply":            "is not a volume server",
		"volume.evacuate -apply":                                "needs -server ADDR",
		"volume.evacuate -server " + victim + " -apply -cancel": "exclude each other",
		"volume.evacuate -server " + victim + " -wait 0s":       "-wait must be > 0",
		"volume.balance extra":                                  "takes only flags",
		"volume.fix.replication -grace -1s":                     "-grace must be >= 0",
	} {
		if _, errs, code := shellOn(t, c, "-y", "-c", cmd); code != 1 || !strings.Contains(errs, want) {
			t.Fatalf("%s: exit %d, %s; want an error with %q", cmd, code, errs, want)
		}
	}
	if _, st2, _ := c.LeaderStatus(); !sameVolumes(st, st2) {
		t.Fatal("bad input changed the replica sets")
	}

	// A writer keeps going during the evacuation; writes may be refused
	// while a volume catches up, but each acknowledged one must survive.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked, refused int
	wg.Add(1)
	go func() {
		defer wg.Done()
		wrng := rand.New(rand.NewPCG(5, 6))
		for i := 0; ctx.Err() == nil; i++ {
			a, err := c.Assign(fmt.Sprintf("replication=001&collection=evac%d", i%3))
			if err != nil {
				refused++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			d := []byte(fmt.Sprintf("during evacuation %d %d", i, wrng.Uint64()))
			if err := c.Put(a.URL, a.Fid, d); err != nil {
				var he *testcluster.HTTPError
				if !errors.As(err, &he) || he.Code != 503 {
					t.Errorf("write during evacuation: %v", err)
				}
				refused++
				continue
			}
			acked++
			w.add(a.Fid, d)
		}
	}()
	var done EvacuateJSON
	start := time.Now()
	jsonOn(t, c, &done, "volume.evacuate -server "+victim+" -apply -wait 2m")
	stop()
	wg.Wait()
	t.Logf("evacuated %d replicas in %v; %d writes acknowledged and %d refused meanwhile", len(done.Plan), time.Since(start).Round(time.Millisecond), acked, refused)
	for _, s := range done.Plan {
		if !s.Done {
			t.Errorf("step not done: %+v", s)
		}
	}
	_, st, err = c.LeaderStatus()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Volumes {
		for _, r := range v.Replicas {
			if r == victim {
				t.Errorf("volume %d still has a replica on %s", v.ID, victim)
			}
		}
	}
	conn, err := rpc.NewPool(nil).Conn(victim)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pb.NewVolumeClient(conn).VolumeServerStatus(context.Background(), &pb.VolumeServerStatusRequest{})
	if err != nil || len(vs.Volumes) != 0 {
		t.Fatalf("%s after evacuation: %v volumes, err %v", victim, vs.GetVolumes(), err)
	}
	var list VolumeListJSON
	jsonOn(t, c, &list, "volume.list")
	for _, s := range list.DataCenters[0].Racks[0].Servers {
		if s.Draining != (s.URL == victim) {
			t.Errorf("volume.list: %s draining=%v", s.URL, s.Draining)
		}
	}
	var cs ClusterStatusJSON
	jsonOn(t, c, &cs, "cluster.status")
	for _, s := range cs.Servers {
		if s.Draining != (s.URL == victim) {
			t.Errorf("cluster.status: %s draining=%v", s.URL, s.Draining)
		}
	}
	if out := mustOn(t, c, "cluster.status"); !strings.Contains(out, "(draining)") {
		t.Errorf("cluster.status text does not mark the draining server:\n%s", out)
	}
	waitWritable(t, c, map[uint32]bool{}, victim)
	checkAllReplicas(t, c, &w)

	var again EvacuateJSON
	jsonOn(t, c, &again, "volume.evacuate -server "+victim+" -apply")
	if len(again.Plan) != 0 {
		t.Fatalf("second evacuate planned %+v", again.Plan)
	}
	mustOn(t, c, "volume.evacuate -server "+victim+" -cancel")
	jsonOn(t, c, &list, "volume.list")
	for _, s := range list.DataCenters[0].Racks[0].Servers {
		if s.Draining {
			t.Errorf("after -cancel %s is still draining", s.URL)
		}
	}
}

func mustOn(t *testing.T, c *testcluster.Cluster, command string) string {
	t.Helper()
	out, errs, code := shellOn(t, c, "-c", command)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", command, code, out, errs)
	}
	return out
}
