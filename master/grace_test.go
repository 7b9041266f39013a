package master

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestFirstAssignSkipsGrace: on a new cluster whose every registered
// volume server has reported to the leader, the first assign grows a
// volume at once, instead of being refused until the leader's grace
// (three pulses, meant for servers still to report after an election)
// has passed.
func TestFirstAssignSkipsGrace(t *testing.T) {
	ms := runMasters(t, pickPeers(t, 1), func(c *Config) { c.VolumeSizeLimit = 100; c.Pulse = 10 * time.Second })
	leader := waitLeader(t, ms)
	addr := leader.m.Addr()
	vs := startVolume(t, []string{addr}, "dc1", "r1")
	testutil.WaitFor(t, 20*time.Second, "the volume server to report in", func() error {
		if _, ok := leader.m.live.snapshot(time.Now()).lastSeen(vs.url); !ok {
			return errors.New("no heartbeat yet")
		}
		return nil
	})
	var a AssignJSON
	code, err := httpGet("http://"+addr+"/dir/assign", &a)
	if err != nil || code != http.StatusOK || a.Fid == "" {
		t.Fatalf("first assign on a new cluster: %d %v %+v", code, err, a)
	}
	if _, since, ok := leader.m.leaderEpoch(); !ok || !leader.m.inGrace(since) {
		t.Fatalf("the assign came after the 30 s grace had passed, so it shows nothing about the grace")
	}
}
