package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

func srv(url, dc, rack string, count int) *topoServer {
	return &topoServer{URL: url, DC: dc, Rack: rack, Alive: true, Max: 10, Count: count}
}

func urls(ss []*topoServer) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.URL)
	}
	return out
}

func TestPlacementFill(t *testing.T) {
	a := srv("a", "dc1", "r1", 3)
	b := srv("b", "dc1", "r1", 1)
	c := srv("c", "dc1", "r1", 0)
	d := srv("d", "dc1", "r2", 5)
	e := srv("e", "dc2", "r1", 2)
	cases := []struct {
		repl       string
		kept, cand []*topoServer
		want       []string // nil: an error
	}{
		{"001", []*topoServer{a}, []*topoServer{c, b, d}, []string{"c"}},      // same rack, least loaded first
		{"001", []*topoServer{a}, []*topoServer{d, e}, nil},                   // no server in a's rack
		{"010", []*topoServer{a}, []*topoServer{b, d, e}, []string{"d"}},      // another rack of dc1
		{"010", []*topoServer{d}, []*topoServer{c, b}, []string{"c"}},         // r2 kept: r1 is the other rack
		{"100", []*topoServer{a}, []*topoServer{b, d, e}, []string{"e"}},      // another data center
		{"100", []*topoServer{a, e}, []*topoServer{b, d}, []string{}},         // already satisfied
		{"002", []*topoServer{a}, []*topoServer{c, b}, []string{"c", "b"}},    // two more in the rack
		{"011", []*topoServer{d}, []*topoServer{c, b, e}, []string{"c", "b"}}, // main rack r1 (two there) beats r2
		{"000", nil, []*topoServer{d, c}, []string{"c"}},                      // evacuating a single copy: least loaded
	}
	for _, tc := range cases {
		p, err := parsePlacement(tc.repl)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.fill(tc.kept, tc.cand)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s kept %v: got %v, want an error", tc.repl, urls(tc.kept), urls(got))
			}
			continue
		}
		if err != nil || !slices.Equal(append([]string{}, urls(got)...), tc.want) {
			t.Errorf("%s kept %v cands %v: got %v %v, want %v", tc.repl, urls(tc.kept), urls(tc.cand), urls(got), err, tc.want)
		}
	}
	p, _ := parsePlacement("010")
	if !p.satisfied([]*topoServer{a, d}) || p.satisfied([]*topoServer{a, b}) {
		t.Error("010: a+d (two racks) must satisfy it, a+b (one rack) must not")
	}
}

// shellOn runs the shell against cluster c (no filer).
func shellOn(t *testing.T, c *testcluster.Cluster, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var ms []string
	for _, m := range c.Masters {
		ms = append(ms, m.HTTP)
	}
	var out, errb bytes.Buffer
	full := append([]string{"--master", strings.Join(ms, ","), "--filer", ""}, args...)
	code = Main(context.Background(), full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// jsonOn runs one command with -o json -y on c and decodes the output.
func jsonOn(t *testing.T, c *testcluster.Cluster, v any, command string) string {
	t.Helper()
	out, errs, code := shellOn(t, c, "-o", "json", "-y", "-c", command)
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", command, code, out, errs)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: output is not the expected JSON: %v\n%s", command, err, out)
	}
	return errs
}

// written is what a test stored: file id -> bytes.
type written struct {
	mu   sync.Mutex
	data map[string][]byte
}

func (w *written) add(f string, d []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.data == nil {
		w.data = map[string][]byte{}
	}
	w.data[f] = d
}

// loseBusiestServer SIGKILLs the volume server holding the most replicas
// and wipes its directory for good. It returns that server, the volumes it
// held and the cluster status from before.
func loseBusiestServer(t *testing.T, c *testcluster.Cluster) (*testcluster.Proc, map[uint32]bool, *testcluster.Status) {
	t.Helper()
	_, st, err := c.LeaderStatus()
	if err != nil {
		t.Fatal(err)
	}
	held := map[string][]uint32{}
	for _, v := range st.Volumes {
		for _, r := range v.Replicas {
			held[r] = append(held[r], v.ID)
		}
	}
	victim := c.Volumes[0]
	for _, p := range c.Volumes {
		if len(held[p.HTTP]) > len(held[victim.HTTP]) {
			victim = p
		}
	}
	lost := map[uint32]bool{}
	for _, id := range held[victim.HTTP] {
		lost[id] = true
	}
	if len(lost) == 0 {
		t.Fatalf("no volume on any server: %+v", st)
	}
	t.Logf("killing %s and wiping %s; it held volumes %v", victim.HTTP, victim.Dir, held[victim.HTTP])
	victim.Kill()
	if err := os.RemoveAll(victim.Dir); err != nil {
		t.Fatal(err)
	}
	return victim, lost, st
}

// writeNeedles stores n random needles through assign, collection coll.
func writeNeedles(t *testing.T, c *testcluster.Cluster, w *written, coll string, n int, rng *rand.Rand) {
	t.Helper()
	for i := 0; i < n; i++ {
		var a testcluster.Assignment
		testutil.WaitFor(t, 60*time.Second, "a file id", func() (err error) {
			a, err = c.Assign("replication=001&collection=" + coll)
			return err
		})
		d := make([]byte, 1+rng.IntN(8000))
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		if err := c.Put(a.URL, a.Fid, d); err != nil {
			t.Fatalf("write %s: %v", a.Fid, err)
		}
		w.add(a.Fid, d)
	}
}

// checkAllReplicas reads every written needle from every replica of its
// volume (per the master) and compares the bytes.
func checkAllReplicas(t *testing.T, c *testcluster.Cluster, w *written) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	_, st, err := c.LeaderStatus()
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[uint32][]string{}
	for _, v := range st.Volumes {
		replicas[v.ID] = v.Replicas
	}
	checked := 0
	for f, want := range w.data {
		id, err := fid.Parse(f)
		if err != nil {
			t.Fatal(err)
		}
		rs := replicas[id.Volume]
		if len(rs) != 2 {
			t.Errorf("volume %d has replicas %v, want 2", id.Volume, rs)
		}
		for _, r := range rs {
			got, err := c.Get(r, f)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("needle %s on replica %s: %v (got %d bytes, want %d)", f, r, err, len(got), len(want))
			}
			checked++
		}
	}
	t.Logf("read back %d needle copies byte-identical", checked)
}

// waitWritable waits until the master leader reports every volume in vids
// writable with two replicas, none of them on a server in not.
func waitWritable(t *testing.T, c *testcluster.Cluster, vids map[uint32]bool, not ...string) {
	t.Helper()
	testutil.WaitFor(t, 120*time.Second, "repaired volumes writable", func() error {
		_, st, err := c.LeaderStatus()
		if err != nil {
			return err
		}
		for _, v := range st.Volumes {
			if !vids[v.ID] {
				continue
			}
			if !v.Writable || len(v.Replicas) != 2 {
				return fmt.Errorf("volume %d: writable %v, replicas %v", v.ID, v.Writable, v.Replicas)
			}
			for _, r := range v.Replicas {
				if slices.Contains(not, r) {
					return fmt.Errorf("volume %d still lists %s", v.ID, r)
				}
			}
		}
		return nil
	})
}

// writeTo stores a fresh needle in volume vid (a key the master handed out
// for another volume is unused in every volume) through its primary, and
// reads it back from both replicas.
func writeTo(t *testing.T, c *testcluster.Cluster, vid uint32, w *written) {
	t.Helper()
	a, err := c.Assign("replication=001&collection=" + unique("fresh"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := fid.Parse(a.Fid)
	id.Volume = vid
	locs, err := c.Lookup(fmt.Sprint(vid))
	if err != nil || len(locs) == 0 {
		t.Fatalf("lookup %d: %v %v", vid, locs, err)
	}
	d := []byte(fmt.Sprintf("written to volume %d after the repair", vid))
	if err := c.Put(locs[0], id.String(), d); err != nil {
		t.Fatalf("write to repaired volume %d: %v", vid, err)
	}
	w.add(id.String(), d)
}
