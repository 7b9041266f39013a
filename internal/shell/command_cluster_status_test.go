package shell

import (
	"strings"
	"testing"
)

func TestClusterStatus(t *testing.T) {
	c := cluster(t)
	var st ClusterStatusJSON
	mustJSON(t, &st, "cluster.status")
	if len(st.Masters) != 1 || !st.Masters[0].IsLeader || st.Masters[0].Term == 0 || st.Masters[0].AppliedIndex == 0 {
		t.Fatalf("masters: %+v", st.Masters)
	}
	if st.MasterLeader != c.Masters[0].HTTP || len(st.MasterPeers) != 1 {
		t.Fatalf("master leader %q peers %+v", st.MasterLeader, st.MasterPeers)
	}
	if len(st.Servers) != 2 {
		t.Fatalf("volume servers: %+v", st.Servers)
	}
	for _, s := range st.Servers {
		if !s.Alive || s.DC != "dc1" || s.Rack != "rack1" || s.FreeBytes == 0 || s.MaxVolumes == 0 {
			t.Errorf("volume server %+v", s)
		}
	}
	if len(st.Filers) != 1 || !st.Filers[0].IsLeader || st.Filers[0].Leader != c.Filers[0].HTTP || st.Filers[0].CommitIndex == 0 {
		t.Fatalf("filers: %+v", st.Filers)
	}

	out := mustRun(t, "-c", "cluster.status")
	for _, want := range []string{"Masters", "leader", "Volume servers", c.Volumes[0].HTTP, c.Volumes[1].HTTP, "Filers", c.Filers[0].HTTP} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}

	// A master that does not answer is shown and, with no leader at all,
	// the command fails.
	out, errs, code := runShell(t, "--master", "127.0.0.1:1", "-c", "cluster.status")
	if code != 1 || !strings.Contains(out, "unreachable") || !strings.Contains(errs, "no master answered") {
		t.Fatalf("unreachable master: exit %d\n%s\n%s", code, out, errs)
	}
}
