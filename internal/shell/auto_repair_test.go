package shell

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestMasterAutoRepair: with --repair-after, the master leader repairs on
// its own what volume.fix.replication -apply repairs by hand. Three volume
// servers at replication 001; the one holding the most replicas is killed
// with SIGKILL and its directory wiped. Without anyone running a command,
// every volume it held gets its second replica back on the other servers,
// every needle reads back byte-identical from both replicas, the volumes
// take writes, and the master counts the steps in its metrics. The server
// then comes back empty and nothing breaks.
func TestMasterAutoRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 3, Replication: "001",
		MasterArgs: []string{"--repair-after", "3s"}})
	rng := rand.New(rand.NewPCG(3, 4))
	var w written
	for i := range 3 {
		writeNeedles(t, c, &w, fmt.Sprintf("auto%d", i), 40, rng)
	}
	victim, lost, _ := loseBusiestServer(t, c)
	start := time.Now()
	waitWritable(t, c, lost, victim.HTTP)
	t.Logf("the master repaired %d volumes on its own %v after the kill", len(lost), time.Since(start).Round(time.Millisecond))
	checkAllReplicas(t, c, &w)
	for id := range lost {
		writeTo(t, c, id, &w)
	}
	// The pass that repaired them ends (counting its steps, logging the
	// outcome) just after its last step made the volumes writable.
	testutil.WaitFor(t, 30*time.Second, "the repair pass to count its steps and log its outcome", func() error {
		if done := repairSteps(t, c, "done"); done < float64(len(lost)) {
			return fmt.Errorf("cairn_master_repair_steps_total{result=\"done\"} = %v, want at least %d", done, len(lost))
		}
		if log := c.Masters[0].Log(); !strings.Contains(log, "re-replicating volumes") || !strings.Contains(log, "automatic repair finished") {
			return fmt.Errorf("master log does not tell about the repair")
		}
		return nil
	})

	// The server comes back with an empty directory: it rejoins, the
	// replica sets stay as repaired, and everything still reads back.
	victim.Start(t)
	c.WaitVolumesRegistered(t)
	var list VolumeListJSON
	testutil.WaitFor(t, 60*time.Second, "no under-replicated volume after the server returned", func() error {
		jsonOn(t, c, &list, "volume.list")
		if len(list.UnderReplicated) != 0 {
			return fmt.Errorf("under-replicated: %+v", list.UnderReplicated)
		}
		return nil
	})
	checkAllReplicas(t, c, &w)
	for _, l := range strings.Split(c.Masters[0].Log(), "\n") {
		if strings.Contains(l, "repair") {
			t.Log(l)
		}
	}
}

// repairSteps reads cairn_master_repair_steps_total{result} from the
// master's /metrics.
func repairSteps(t *testing.T, c *testcluster.Cluster, result string) float64 {
	t.Helper()
	resp, err := c.Client.Get(c.URL(c.Masters[0].HTTP, "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	m := regexp.MustCompile(`(?m)^cairn_master_repair_steps_total\{result="` + result + `"\} (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
