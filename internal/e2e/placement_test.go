package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestRackPlacement runs real volume servers in two data centers, dc1
// with two racks (two servers in rack1, one in rack2) and dc2 with one
// server, and checks where the master puts each copy (placement xyz: x
// copies in other data centers, y on other racks, z more in the rack):
//   - 010: one copy on each rack of dc1; a needle is read back from the
//     rack1 copy with the rack2 server killed (at the end);
//   - 100: one copy in each data center;
//   - 001: both copies in dc1's rack1, the only rack with two servers;
//   - 200 and 020: a clear error naming what is missing, and no volume is
//     created.
//
// Each placement is checked on several volumes (one per collection: a
// master fills one writable volume per collection and placement first).
func TestRackPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	dcs := []string{"dc1", "dc1", "dc1", "dc2"}
	racks := []string{"rack1", "rack1", "rack2", "rack1"}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 4, DCs: dcs, Racks: racks, Replication: "010"})
	where := map[string]string{} // volume server -> "dc/rack"
	for i, v := range c.Volumes {
		where[v.HTTP] = dcs[i] + "/" + racks[i]
		var st struct{ DC, Rack string }
		if err := c.GetJSON(c.URL(v.HTTP, "/status"), &st); err != nil || st.DC+"/"+st.Rack != where[v.HTTP] {
			t.Fatalf("%s reports %s/%s (%v), want %s", v.HTTP, st.DC, st.Rack, err, where[v.HTTP])
		}
	}
	type needle struct {
		fid  string
		data []byte
	}
	// place writes a needle to vols new volumes of replication rep and
	// returns, per volume, where its copies are (sorted "dc/rack" list).
	place := func(rep string, vols int) ([][]string, []needle) {
		t.Helper()
		var layouts [][]string
		var ns []needle
		seen := map[string]bool{}
		for i := range vols {
			var a testcluster.Assignment
			testutil.WaitFor(t, 60*time.Second, "an assignable "+rep+" volume", func() (err error) {
				a, err = c.Assign(fmt.Sprintf("replication=%s&collection=p%s-%d", rep, rep, i))
				return err
			})
			data := bytes.Repeat([]byte(fmt.Sprintf("placement %s probe %d ", rep, i)), 50)
			if err := c.Put(a.URL, a.Fid, data); err != nil {
				t.Fatalf("write %s: %v", a.Fid, err)
			}
			vid := a.Fid[:strings.IndexByte(a.Fid, ',')]
			if seen[vid] {
				t.Fatalf("collection %d of %s reused volume %s", i, rep, vid)
			}
			seen[vid] = true
			locs, err := c.Lookup(vid)
			if err != nil {
				t.Fatalf("lookup of volume %s: %v", vid, err)
			}
			var l []string
			for _, u := range locs {
				l = append(l, where[u])
			}
			slices.Sort(l)
			layouts = append(layouts, l)
			ns = append(ns, needle{a.Fid, data})
		}
		return layouts, ns
	}

	l010, n010 := place("010", 4)
	for _, l := range l010 {
		if strings.Join(l, " ") != "dc1/rack1 dc1/rack2" {
			t.Fatalf("010 volumes are on %v, want one copy on each rack of dc1", l010)
		}
	}
	l100, _ := place("100", 4)
	for _, l := range l100 {
		if len(l) != 2 || l[0][:3] == l[1][:3] {
			t.Fatalf("100 volumes are on %v, want one copy in each data center", l100)
		}
	}
	l001, _ := place("001", 2)
	for _, l := range l001 {
		if strings.Join(l, " ") != "dc1/rack1 dc1/rack1" {
			t.Fatalf("001 volumes are on %v, want both copies in dc1/rack1", l001)
		}
	}
	t.Logf("010: %v; 100: %v; 001: %v", l010, l100, l001)

	// Layouts this cluster cannot hold: a clear error, no volume.
	before := volumeCount(t, c)
	for _, r := range []struct{ rep, want string }{
		{"200", "2 in other data centers"},
		{"020", "2 on other racks"},
	} {
		_, err := c.Assign("replication=" + r.rep)
		if err == nil || !strings.Contains(err.Error(), "start more volume servers") || !strings.Contains(err.Error(), r.want) {
			t.Fatalf("assign with replication %s: %v, want a clear error about servers (%s)", r.rep, err, r.want)
		}
	}
	if after := volumeCount(t, c); after != before {
		t.Fatalf("refused assignments changed the volume count from %d to %d", before, after)
	}

	// Lose the rack2 server: each 010 needle is read from its rack1 copy.
	for i, v := range c.Volumes {
		if dcs[i] == "dc1" && racks[i] == "rack2" {
			v.Kill()
		}
	}
	for _, n := range n010 {
		locs, err := c.Lookup(n.fid[:strings.IndexByte(n.fid, ',')])
		if err != nil {
			t.Fatal(err)
		}
		read := false
		for _, u := range locs {
			if where[u] != "dc1/rack1" {
				continue
			}
			got, err := c.Get(u, n.fid)
			if err != nil || !bytes.Equal(got, n.data) {
				t.Fatalf("%s from its rack1 copy on %s with rack2 down: %v (equal %v)", n.fid, u, err, bytes.Equal(got, n.data))
			}
			read = true
		}
		if !read {
			t.Fatalf("%s has no rack1 copy: %v", n.fid, locs)
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
