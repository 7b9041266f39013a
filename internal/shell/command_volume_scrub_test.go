package shell

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

func volumeProc(t *testing.T, c *testcluster.Cluster, url string) *testcluster.Proc {
	t.Helper()
	for _, p := range c.Volumes {
		if p.HTTP == url {
			return p
		}
	}
	t.Fatalf("no volume server %s", url)
	return nil
}

// TestVolumeScrub corrupts a needle on one replica, scrubs, and reads the
// needle back from that replica alone with the healthy one killed.
func TestVolumeScrub(t *testing.T) {
	c := cluster(t)
	a, err := c.Assign("replication=001&collection=" + unique("scrubtest"))
	if err != nil {
		t.Fatal(err)
	}
	vid := strings.Split(a.Fid, ",")[0]
	want := make([]byte, 8192)
	rand.Read(want)
	if err := c.Put(a.URL, a.Fid, want); err != nil {
		t.Fatal(err)
	}
	locs, err := c.Lookup(vid)
	if err != nil || len(locs) != 2 {
		t.Fatalf("lookup %s: %v %v", vid, locs, err)
	}
	bad, good := volumeProc(t, c, locs[1]), volumeProc(t, c, locs[0])
	testcluster.FlipByte(t, testcluster.FindDat(t, bad.Dir, vid), want)

	// Report only: the corruption is found and left alone, and the
	// command fails telling how to repair.
	out, errs, code := runShell(t, "-o", "json", "-c", "volume.scrub -no-repair -volumeId "+vid)
	if code != 1 || !strings.Contains(errs, "without -no-repair") || !strings.Contains(out, `"corrupt":1`) {
		t.Fatalf("scrub -no-repair: exit %d\n%s\n%s", code, out, errs)
	}
	var rs []ScrubJSON
	mustJSON(t, &rs, "volume.scrub -volumeId "+vid)
	if len(rs) != 2 {
		t.Fatalf("want one result per replica: %+v", rs)
	}
	for _, r := range rs {
		wantCorrupt := uint64(0)
		if r.Server == bad.HTTP {
			wantCorrupt = 1
		}
		if r.Error != "" || r.Checked != 1 || r.Corrupt != wantCorrupt || r.Repaired != wantCorrupt {
			t.Errorf("scrub of %s: %+v, want checked 1, corrupt and repaired %d", r.Server, r, wantCorrupt)
		}
	}

	good.Kill()
	t.Cleanup(func() {
		good.Start(t)
		c.WaitVolumesRegistered(t)
		testutil.WaitFor(t, 60*time.Second, "volume "+vid+" writable again", func() error {
			_, st, err := c.LeaderStatus()
			if err != nil {
				return err
			}
			for _, v := range st.Volumes {
				if fmt.Sprint(v.ID) == vid && !v.Writable {
					return fmt.Errorf("volume %s not writable", vid)
				}
			}
			return nil
		})
	})
	got, err := c.Get(bad.HTTP, a.Fid)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read from the scrubbed replica with its peer down: err=%v equal=%v", err, bytes.Equal(got, want))
	}
	// A replica that cannot be reached makes the scrub fail, naming it.
	out, errs, code = runShell(t, "-c", "volume.scrub -volumeId "+vid)
	if code != 1 || !strings.Contains(errs, good.HTTP) {
		t.Fatalf("scrub with a replica down: exit %d\n%s\n%s", code, out, errs)
	}
}
