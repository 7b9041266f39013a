package shell

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/rpc"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestVolumeBalance: volumes grown while one of three servers was down all
// sit on the other two; volume.balance moves replicas onto the newcomer
// until no two servers differ by more than one, and every needle still
// reads back from every replica.
func TestVolumeBalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Replication: "001"})
	late := c.Volumes[2]
	late.Stop()
	rng := rand.New(rand.NewPCG(9, 9))
	var w written
	waitDead(t, c, late.HTTP)
	for i := range 6 {
		writeNeedles(t, c, &w, fmt.Sprintf("bal%d", i), 15, rng)
	}
	late.Start(t)
	c.WaitVolumesRegistered(t)

	var plan BalanceJSON
	jsonOn(t, c, &plan, "volume.balance")
	if plan.Before[late.HTTP] != 0 || len(plan.Plan) == 0 || plan.Applied {
		t.Fatalf("plan %+v: want moves onto the empty %s", plan, late.HTTP)
	}
	if spread(plan.After) > 1 {
		t.Fatalf("the plan leaves a spread of %d: %v", spread(plan.After), plan.After)
	}
	_, errs, code := shellOn(t, c, "-c", "volume.balance -apply")
	if code != 1 || !strings.Contains(errs, "not confirmed") {
		t.Fatalf("-apply without -y: exit %d, %s", code, errs)
	}

	var done BalanceJSON
	jsonOn(t, c, &done, "volume.balance -apply")
	for _, s := range done.Plan {
		if !s.Done {
			t.Errorf("move not done: %+v", s)
		}
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
	t.Logf("replicas per server: before %v, after %v (%d moves)", plan.Before, count, len(done.Plan))
	if spread(count) > 1 || count[late.HTTP] == 0 {
		t.Fatalf("after balance: %v", count)
	}
	waitWritable(t, c, map[uint32]bool{})
	checkAllReplicas(t, c, &w)

	var again BalanceJSON
	jsonOn(t, c, &again, "volume.balance")
	if len(again.Plan) != 0 {
		t.Fatalf("balanced cluster still planned %+v", again.Plan)
	}

	// A copy outside the replica set (as an interrupted move leaves one) is
	// shown by volume.list and deleted by volume.fix.replication -apply.
	vol := st.Volumes[0]
	var outside string
	for _, p := range c.Volumes {
		if !slices.Contains(vol.Replicas, p.HTTP) {
			outside = p.HTTP
		}
	}
	pool := rpc.NewPool(nil)
	defer pool.Close()
	conn, err := pool.Conn(outside)
	if err != nil {
		t.Fatal(err)
	}
	mconn, err := pool.Conn(c.Masters[0].HTTP)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := pb.NewMasterClient(mconn).ClusterStatus(context.Background(), &pb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	coll := ""
	for _, v := range ms.Volumes {
		if v.Id == vol.ID {
			coll = v.Collection
		}
	}
	if _, err := pb.NewVolumeClient(conn).CopyVolume(context.Background(), &pb.CopyVolumeRequest{
		VolumeId: vol.ID, Collection: coll, Replication: "001", Source: vol.Replicas[0]}); err != nil {
		t.Fatal(err)
	}
	stray := func() (n int) {
		var list VolumeListJSON
		jsonOn(t, c, &list, "volume.list")
		for _, s := range list.DataCenters[0].Racks[0].Servers {
			for _, v := range s.Volumes {
				if v.Stray {
					n++
				}
			}
		}
		return n
	}
	if n := stray(); n != 1 {
		t.Fatalf("volume.list shows %d stray copies, want 1", n)
	}
	var fix FixReplicationJSON
	jsonOn(t, c, &fix, "volume.fix.replication -apply")
	if len(fix.Plan) != 1 || !fix.Plan[0].Stray || fix.Plan[0].Drop != outside || !fix.Plan[0].Done {
		t.Fatalf("fix.replication on a stray copy: %+v", fix.Plan)
	}
	if n := stray(); n != 0 {
		t.Fatalf("%d stray copies left", n)
	}
	checkAllReplicas(t, c, &w)
}

func spread(counts map[string]int) int {
	lo, hi := -1, 0
	for _, n := range counts {
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	return hi - max(lo, 0)
}

// waitDead waits until the master leader counts server dead.
func waitDead(t *testing.T, c *testcluster.Cluster, server string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "master to count "+server+" dead", func() error {
		_, st, err := c.LeaderStatus()
		if err != nil {
			return err
		}
		for _, s := range st.Servers {
			if s.URL == server && s.Alive {
				return fmt.Errorf("%s still alive", server)
			}
		}
		return nil
	})
}
