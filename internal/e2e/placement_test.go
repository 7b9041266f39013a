package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestRackPlacement runs real volume servers on two racks (two in rack1,
// one in rack2) and checks where the master puts each copy:
//   - 010 (a copy on another rack): every volume has one copy in each
//     rack, and a needle written to it is read back from the other rack's
//     copy with the primary's server killed;
//   - 001 (two copies in one rack): both copies in rack1, the only rack
//     with two servers;
//   - 100 (a copy in another data center) and 020 (two other racks): a
//     clear error naming what is missing, and no volume is created.
func TestRackPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	racks := []string{"rack1", "rack1", "rack2"}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Racks: racks, Replication: "010"})
	rackOf := map[string]string{}
	for i, v := range c.Volumes {
		rackOf[v.HTTP] = racks[i]
		var st struct{ Rack string }
		if err := c.GetJSON(c.URL(v.HTTP, "/status"), &st); err != nil || st.Rack != racks[i] {
			t.Fatalf("%s reports rack %q (%v), want %s", v.HTTP, st.Rack, err, racks[i])
		}
	}
	locate := func(fid string) []string {
		t.Helper()
		vid := fid[:strings.IndexByte(fid, ',')]
		locs, err := c.Lookup(vid)
		if err != nil {
			t.Fatalf("lookup of volume %s: %v", vid, err)
		}
		return locs
	}

	// 010: several volumes (one per collection: a master fills one
	// writable volume per collection first), each with one copy per rack.
	type written struct {
		fid, primary string
		data         []byte
	}
	var ws []written
	vols := map[string]bool{}
	for i := range 6 {
		var a testcluster.Assignment
		testutil.WaitFor(t, 60*time.Second, "an assignable 010 volume", func() (err error) {
			a, err = c.Assign(fmt.Sprintf("replication=010&collection=racks%d", i))
			return err
		})
		data := bytes.Repeat([]byte(fmt.Sprintf("rack placement probe %d ", i)), 50)
		if err := c.Put(a.URL, a.Fid, data); err != nil {
			t.Fatalf("write %s: %v", a.Fid, err)
		}
		locs := locate(a.Fid)
		got := map[string]int{}
		for _, l := range locs {
			got[rackOf[l]]++
		}
		if len(locs) != 2 || got["rack1"] != 1 || got["rack2"] != 1 {
			t.Fatalf("010 volume of %s is on %v (racks %v), want one copy in rack1 and one in rack2", a.Fid, locs, got)
		}
		vols[a.Fid[:strings.IndexByte(a.Fid, ',')]] = true
		ws = append(ws, written{a.Fid, a.URL, data})
	}
	if len(vols) != 6 {
		t.Fatalf("6 collections gave %d volumes", len(vols))
	}
	t.Logf("010: %d volumes, each on one server of each rack", len(vols))

	// 001: two copies in one rack, which can only be rack1.
	var a001 testcluster.Assignment
	testutil.WaitFor(t, 60*time.Second, "an assignable 001 volume", func() (err error) {
		a001, err = c.Assign("replication=001")
		return err
	})
	for _, l := range locate(a001.Fid) {
		if rackOf[l] != "rack1" {
			t.Fatalf("001 volume of %s has a copy on %s in %s, want both in rack1", a001.Fid, l, rackOf[l])
		}
	}
	if n := len(locate(a001.Fid)); n != 2 {
		t.Fatalf("001 volume has %d copies, want 2", n)
	}

	// Layouts this cluster cannot hold: a clear error, no volume.
	before := volumeCount(t, c)
	for _, r := range []struct{ rep, want string }{
		{"100", "in other data centers"},
		{"020", "on other racks"},
	} {
		_, err := c.Assign("replication=" + r.rep)
		if err == nil || !strings.Contains(err.Error(), "start more volume servers") || !strings.Contains(err.Error(), r.want) {
			t.Fatalf("assign with replication %s: %v, want a clear error about servers %s", r.rep, err, r.want)
		}
	}
	if after := volumeCount(t, c); after != before {
		t.Fatalf("refused assignments changed the volume count from %d to %d", before, after)
	}

	// Lose the rack2 server: each needle is still read from its rack1 copy.
	for i, v := range c.Volumes {
		if racks[i] == "rack2" {
			v.Kill()
		}
	}
	for _, w := range ws {
		for _, l := range locate(w.fid) {
			if rackOf[l] != "rack1" {
				continue
			}
			got, err := c.Get(l, w.fid)
			if err != nil || !bytes.Equal(got, w.data) {
				t.Fatalf("%s from its rack1 copy on %s with rack2 down: %v (equal %v)", w.fid, l, err, bytes.Equal(got, w.data))
			}
		}
	}
}

// volumeCount is the number of volume copies the volume servers that are
// running report at /status.
func volumeCount(t *testing.T, c *testcluster.Cluster) int {
	t.Helper()
	n := 0
	for _, v := range c.Volumes {
		if !v.Running() {
			continue
		}
		var st struct {
			Volumes []any `json:"volumes"`
		}
		if err := c.GetJSON(c.URL(v.HTTP, "/status"), &st); err != nil {
			t.Fatalf("status of %s: %v", v.HTTP, err)
		}
		n += len(st.Volumes)
	}
	return n
}
