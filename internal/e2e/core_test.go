package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ackLog records every write that got a 201.
type ackLog struct {
	mu      sync.Mutex
	acked   map[string][]byte // fid -> content
	n       atomic.Int64
	lastErr atomic.Value // string: the newest failed assign or write, for failure messages
}

// fail records a failed attempt so a stalled test can say why.
func (l *ackLog) fail(what string, err error) {
	l.lastErr.Store(fmt.Sprintf("%s at %s: %v", what, time.Now().Format("15:04:05.000"), err))
}

func (l *ackLog) add(fid string, data []byte) {
	l.mu.Lock()
	l.acked[fid] = data
	l.mu.Unlock()
	l.n.Add(1)
}

// writer assigns and writes random needles until stop closes.
func writer(c *testcluster.Cluster, seed uint64, query string, log *ackLog, stop <-chan struct{}, failures *atomic.Int64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for {
		select {
		case <-stop:
			return
		default:
		}
		a, err := c.Assign(query)
		if err != nil {
			log.fail("assign", err)
			failures.Add(1)
			time.Sleep(20 * time.Millisecond) // back off while the cluster recovers
			continue
		}
		data := make([]byte, 1+rng.IntN(16<<10))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := c.Put(a.URL, a.Fid, data); err != nil {
			log.fail("write of "+a.Fid+" to "+a.URL, err)
			failures.Add(1)
			continue
		}
		log.add(a.Fid, data)
	}
}

// waitProgress waits until at least n more writes are acknowledged.
func waitProgress(t *testing.T, log *ackLog, n int64, what string) {
	t.Helper()
	start := log.n.Load()
	testutil.WaitFor(t, 90*time.Second, what, func() error {
		if got := log.n.Load() - start; got < n {
			last, _ := log.lastErr.Load().(string)
			return fmt.Errorf("%d of %d writes acknowledged; newest failure: %s", got, n, last)
		}
		return nil
	})
}

// verifyAll reads every acknowledged needle from every replica.
func verifyAll(t *testing.T, c *testcluster.Cluster, log *ackLog, copies int) {
	t.Helper()
	// Wait until every volume is writable again: all replicas alive and caught up.
	testutil.WaitFor(t, 120*time.Second, "every volume writable (replicas caught up)", func() error {
		_, st, err := c.LeaderStatus()
		if err != nil {
			return err
		}
		for _, v := range st.Volumes {
			if !v.Writable {
				return fmt.Errorf("volume %d not writable", v.ID)
			}
		}
		return nil
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	began := time.Now()
	locs := map[string][]string{}
	bad := 0
	for fid, want := range log.acked {
		vid := fid[:strings.IndexByte(fid, ',')]
		if _, ok := locs[vid]; !ok {
			l, err := c.Lookup(vid)
			if err != nil {
				t.Fatalf("lookup volume %s: %v", vid, err)
			}
			if len(l) != copies {
				t.Fatalf("volume %s has %d locations %v, want %d", vid, len(l), l, copies)
			}
			locs[vid] = l
		}
		for _, url := range locs[vid] {
			got, err := getPatiently(t, c, url, fid)
			if err != nil || !bytes.Equal(got, want) {
				bad++
				if bad <= 10 {
					t.Errorf("acknowledged needle %s on %s: err=%v, %d bytes (want %d), equal=%v", fid, url, err, len(got), len(want), bytes.Equal(got, want))
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d acknowledged needle copies lost or wrong out of %d needles", bad, len(log.acked))
	}
	t.Logf("verified %d acknowledged needles on %d replicas each in %v", len(log.acked), copies, time.Since(began).Round(time.Millisecond))
}

// getPatiently reads needle fid from url, asking again (up to three times
// in all) when the answer does not come within the client's timeout. A read
// that times out has not lost the needle: the bytes it finally returns are
// still checked by the caller, and a server that never answers still fails
// the test. Each timeout is logged with the machine's load, so a slow
// answer on a busy machine can be told from a stuck server.
func getPatiently(t *testing.T, c *testcluster.Cluster, url, fid string) ([]byte, error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		began := time.Now()
		got, err := c.Get(url, fid)
		var nerr net.Error
		if err == nil || !errors.As(err, &nerr) || !nerr.Timeout() || attempt == 3 {
			return got, err
		}
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("read of %s on %s timed out after %v (attempt %d, load average %s); asking again",
			fid, url, time.Since(began).Round(time.Millisecond), attempt, strings.TrimSpace(string(load)))
	}
}

// TestKillCycles is the storage core's acceptance test: 3 masters and 3
// volume servers at replication 001, 8 concurrent writers, and repeated
// SIGKILLs of the master leader and of volume servers. Every write that got a
// 201 must read back byte-identical from every replica, and writes must
// continue after every failover. CAIRN_KILL_CYCLES sets the number of cycles
// (make crash-campaign runs many).
func TestKillCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes; skipped with -short")
	}
	cycles := envInt("CAIRN_KILL_CYCLES", 20)
	c := testcluster.Start(t, testcluster.Options{Masters: 3, Volumes: 3, Replication: "001"})
	log := &ackLog{acked: map[string][]byte{}}
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); writer(c, uint64(i+1), "replication=001", log, stop, &failures) }()
	}
	defer func() { close(stop); wg.Wait() }()

	waitProgress(t, log, 50, "writes before any kill")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := range cycles {
		var victim *testcluster.Proc
		if i%2 == 0 {
			victim = c.WaitLeader(t)
		} else {
			victim = c.Volumes[rng.IntN(len(c.Volumes))]
		}
		victim.Kill()
		killed := time.Now()
		waitProgress(t, log, 1, fmt.Sprintf("cycle %d: a write to succeed with %s killed", i, victim.Name))
		t.Logf("cycle %d: first write acknowledged %v after SIGKILL of %s", i, time.Since(killed).Round(time.Millisecond), victim.Name)
		waitProgress(t, log, 20, fmt.Sprintf("cycle %d: writes to continue with %s killed", i, victim.Name))
		victim.Start(t)
		c.WaitLeader(t)
		c.WaitVolumesRegistered(t)
		waitProgress(t, log, 20, fmt.Sprintf("cycle %d: writes after %s restarted", i, victim.Name))
		t.Logf("cycle %d: killed and restarted %s; %d writes acknowledged, %d attempts failed so far", i, victim.Name, log.n.Load(), failures.Load())
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})

	// Everything restarts once more, all at once, before the final check.
	for _, p := range append(append([]*testcluster.Proc{}, c.Masters...), c.Volumes...) {
		p.Kill()
	}
	for _, p := range append(append([]*testcluster.Proc{}, c.Masters...), c.Volumes...) {
		p.Start(t)
	}
	c.WaitLeader(t)
	c.WaitVolumesRegistered(t)
	verifyAll(t, c, log, 2)
}

func procByURL(c *testcluster.Cluster, url string) *testcluster.Proc {
	for _, p := range c.Volumes {
		if p.HTTP == url {
			return p
		}
	}
	return nil
}

// TestCorruptReplicaRepaired flips a byte in one replica's data file: reads
// from that replica return the right bytes (from the other replica), the bad
// copy is repaired durably, and when every copy is bad the read fails loudly.
func TestCorruptReplicaRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; skipped with -short")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 2, Replication: "001"})
	var a testcluster.Assignment
	testutil.WaitFor(t, 60*time.Second, "an assignable volume", func() (err error) {
		a, err = c.Assign("replication=001")
		return err
	})
	want := bytes.Repeat([]byte("cairn-corruption-probe-"), 300)
	if err := c.Put(a.URL, a.Fid, want); err != nil {
		t.Fatal(err)
	}
	vid := a.Fid[:strings.IndexByte(a.Fid, ',')]
	locs, err := c.Lookup(vid)
	if err != nil || len(locs) != 2 {
		t.Fatalf("lookup: %v %v", locs, err)
	}
	bad := procByURL(c, locs[1])
	testcluster.FlipByte(t, testcluster.FindDat(t, bad.Dir, vid), want)

	got, err := c.Get(bad.HTTP, a.Fid)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read from the corrupted replica: err=%v equal=%v", err, bytes.Equal(got, want))
	}
	// The repair must be durable: restart the repaired server hard and read
	// from it alone, with its peer down.
	good := procByURL(c, locs[0])
	good.Kill()
	bad.Kill()
	bad.Start(t)
	testutil.WaitFor(t, 60*time.Second, "repaired replica serving", func() error {
		got, err := c.Get(bad.HTTP, a.Fid)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return errors.New("repaired replica returned wrong bytes")
		}
		return nil
	})
	good.Start(t)
	c.WaitVolumesRegistered(t)

	// Both copies bad: a clear error, never the corrupt bytes.
	b := []byte("second-probe-needle-content-")
	b = bytes.Repeat(b, 100)
	var a2 testcluster.Assignment
	testutil.WaitFor(t, 60*time.Second, "a write to volume after restarts", func() (err error) {
		if a2, err = c.Assign("replication=001"); err != nil {
			return err
		}
		return c.Put(a2.URL, a2.Fid, b)
	})
	vid2 := a2.Fid[:strings.IndexByte(a2.Fid, ',')]
	for _, p := range c.Volumes {
		testcluster.FlipByte(t, testcluster.FindDat(t, p.Dir, vid2), b)
	}
	for _, p := range c.Volumes {
		got, err := c.Get(p.HTTP, a2.Fid)
		var he *testcluster.HTTPError
		if !errors.As(err, &he) || he.Code != 500 || !strings.Contains(he.Body, "corrupt") {
			t.Fatalf("read of a needle corrupt on every replica from %s: got %d bytes, err %v; want HTTP 500 naming the corruption", p.Name, len(got), err)
		}
	}
}
