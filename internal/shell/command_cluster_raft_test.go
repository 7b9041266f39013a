package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// raftCluster starts three masters and three filers (real processes, real
// TCP) for the membership tests; the shared cluster has one of each.
func raftCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	return testcluster.Start(t, testcluster.Options{Masters: 3, Filers: 3})
}

func raftSh(t *testing.T, c *testcluster.Cluster, args ...string) (string, string, int) {
	t.Helper()
	var masters []string
	for _, m := range c.Masters {
		masters = append(masters, m.HTTP)
	}
	var out, errb bytes.Buffer
	full := append([]string{"--master", strings.Join(masters, ","), "--filer", strings.Join(c.FilerAddrs(), ",")}, args...)
	code := Main(context.Background(), full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func raftMustRun(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, errs, code := raftSh(t, c, args...)
	if code != 0 {
		t.Fatalf("shell %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// raftListOf runs cluster.raft.list -o json for group.
func raftListOf(c *testcluster.Cluster, t *testing.T, group string) (RaftListJSON, error) {
	out, errs, code := raftSh(t, c, "-o", "json", "-c", "cluster.raft.list -group "+group)
	var l RaftListJSON
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return l, fmt.Errorf("output is not JSON (exit %d, %s): %v: %q", code, errs, err, out)
	}
	if code != 0 {
		return l, fmt.Errorf("exit %d: %s", code, errs)
	}
	return l, nil
}

// waitRaft waits until the group's list satisfies cond (and has a leader).
func waitRaft(t *testing.T, c *testcluster.Cluster, group, what string, cond func(RaftListJSON) error) RaftListJSON {
	t.Helper()
	var l RaftListJSON
	testutil.WaitFor(t, 90*time.Second, what, func() (err error) {
		if l, err = raftListOf(c, t, group); err != nil {
			return err
		}
		return cond(l)
	})
	return l
}

func voters(l RaftListJSON) (ids []string) {
	for _, s := range l.Servers {
		if s.Member && s.Suffrage == "Voter" {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func allVotersUp(n int) func(RaftListJSON) error {
	return func(l RaftListJSON) error {
		if v := voters(l); len(v) != n {
			return fmt.Errorf("%d voters %v, want %d", len(v), v, n)
		}
		var leaders int
		for _, s := range l.Servers {
			if s.Member && !s.Reachable {
				return fmt.Errorf("%s unreachable: %s", s.ID, s.Error)
			}
			if s.IsLeader {
				leaders++
			}
		}
		if leaders != 1 || l.Leader == "" {
			return fmt.Errorf("%d members say they lead, leader %q", leaders, l.Leader)
		}
		return nil
	}
}

func TestClusterRaft(t *testing.T) {
	c := raftCluster(t)
	for _, group := range []string{"master", "filer"} {
		t.Run(group, func(t *testing.T) { testRaftGroup(t, c, group) })
	}
}

func testRaftGroup(t *testing.T, c *testcluster.Cluster, group string) {
	procs := c.Masters
	if group == "filer" {
		procs = c.Filers
	}
	l := waitRaft(t, c, group, "3 voters with one leader, all with indexes", func(l RaftListJSON) error {
		if err := allVotersUp(3)(l); err != nil {
			return err
		}
		for _, s := range l.Servers {
			if s.Term == 0 || s.CommitIndex == 0 || s.AppliedIndex == 0 || s.LastLogIndex == 0 {
				return fmt.Errorf("member without indexes yet: %+v", s)
			}
		}
		return nil
	})
	for _, s := range l.Servers {
		if !strings.HasSuffix(s.Address, ":29333") && !strings.HasSuffix(s.Address, ":28888") {
			t.Fatalf("member with an unexpected raft address: %+v", s)
		}
	}
	text := raftMustRun(t, c, "-c", "cluster.raft.list -group "+group)
	if !strings.Contains(text, group+" group: leader "+l.Leader) || strings.Count(text, " voter ") != 3 || !strings.Contains(text, " leader ") {
		t.Fatalf("text list:\n%s", text)
	}

	// Transfer to a named follower, then to any.
	var follower string
	for _, s := range l.Servers {
		if !s.IsLeader {
			follower = s.ID
			break
		}
	}
	out := raftMustRun(t, c, "-c", "cluster.raft.transfer -group "+group+" "+follower)
	if !strings.Contains(out, "moved from "+l.Leader+" to "+follower) {
		t.Fatalf("transfer to %s: %q", follower, out)
	}
	waitRaft(t, c, group, "leadership at "+follower, func(l RaftListJSON) error {
		if l.Leader != follower {
			return fmt.Errorf("leader is %s", l.Leader)
		}
		return nil
	})
	var tr RaftChangeJSON
	out = raftMustRun(t, c, "-o", "json", "-c", "cluster.raft.transfer -group "+group)
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.PreviousLeader != follower {
		t.Fatalf("transfer to any: %v %q", err, out)
	}
	l = waitRaft(t, c, group, "leadership moved away from "+follower, func(l RaftListJSON) error {
		if l.Leader == follower {
			return fmt.Errorf("leader still %s", l.Leader)
		}
		return allVotersUp(3)(l)
	})
	_, errs, code := raftSh(t, c, "-c", "cluster.raft.transfer -group "+group+" 127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "not a voter") {
		t.Fatalf("transfer to a stranger: exit %d %q", code, errs)
	}

	// Remove a follower (refused without -y), then add it back.
	leader := l.Leader
	var victim, other, otherRaft string
	for _, s := range l.Servers {
		switch {
		case s.IsLeader:
		case victim == "":
			victim = s.ID
		default:
			other, otherRaft = s.ID, s.Address
		}
	}
	_, errs, code = raftSh(t, c, "-c", "cluster.raft.remove -group "+group+" "+victim)
	if code != 1 || !strings.Contains(errs, "-y") {
		t.Fatalf("remove without -y: exit %d %q", code, errs)
	}
	if v := voters(waitRaft(t, c, group, "3 voters", allVotersUp(3))); len(v) != 3 {
		t.Fatalf("unconfirmed remove changed the group: %v", v)
	}
	out = raftMustRun(t, c, "-y", "-c", "cluster.raft.remove -group "+group+" "+victim)
	if !strings.Contains(out, "removed "+group+" "+victim) {
		t.Fatalf("remove: %q", out)
	}
	l = waitRaft(t, c, group, "2 voters after the remove", allVotersUp(2))
	for _, s := range l.Servers {
		if s.ID == victim && (s.Member || !s.Reachable) {
			t.Fatalf("removed member listed as %+v", s)
		}
	}
	if !strings.Contains(raftMustRun(t, c, "-c", "cluster.raft.list -group "+group), "not a member") {
		t.Fatal("text list does not show the removed server as not a member")
	}
	_, errs, code = raftSh(t, c, "-y", "-c", "cluster.raft.remove -group "+group+" "+victim)
	if code != 1 || !strings.Contains(errs, "not a member") {
		t.Fatalf("remove twice: exit %d %q", code, errs)
	}
	var add RaftChangeJSON
	out = raftMustRun(t, c, "-o", "json", "-c", "cluster.raft.add -group "+group+" "+victim)
	if err := json.Unmarshal([]byte(out), &add); err != nil || len(add.Servers) != 3 {
		t.Fatalf("add back: %v %q", err, out)
	}
	waitRaft(t, c, group, "3 voters after adding back, all caught up", func(l RaftListJSON) error {
		if err := allVotersUp(3)(l); err != nil {
			return err
		}
		var lead RaftServerJSON
		for _, s := range l.Servers {
			if s.IsLeader {
				lead = s
			}
		}
		for _, s := range l.Servers {
			if s.ID == victim && s.AppliedIndex < lead.CommitIndex-1 {
				return fmt.Errorf("%s applied %d, leader committed %d", victim, s.AppliedIndex, lead.CommitIndex)
			}
		}
		return nil
	})
	_, errs, code = raftSh(t, c, "-c", "cluster.raft.add -group "+group+" not-an-address")
	if code != 1 || !strings.Contains(errs, "host:port") {
		t.Fatalf("add with a bad id: exit %d %q", code, errs)
	}

	// Removing a follower while the other follower is down would leave
	// one voter of two answering: refused.
	var otherProc *testcluster.Proc
	for _, p := range procs {
		if p.HTTP == other {
			otherProc = p
		}
	}
	otherProc.Kill()
	_, errs, code = raftSh(t, c, "-y", "-c", "cluster.raft.remove -group "+group+" "+victim)
	if code != 1 || !strings.Contains(errs, "refusing to remove") || !strings.Contains(errs, other) {
		t.Fatalf("remove breaking quorum: exit %d %q", code, errs)
	}
	otherProc.Start(t)
	waitRaft(t, c, group, "3 voters after the restart", allVotersUp(3))

	// Shrink to one voter: the last one is not removed.
	var rm RaftChangeJSON
	out = raftMustRun(t, c, "-y", "-o", "json", "-c", "cluster.raft.remove -group "+group+" "+victim)
	if err := json.Unmarshal([]byte(out), &rm); err != nil || rm.Server != victim || len(rm.Servers) != 2 || rm.Leader == "" {
		t.Fatalf("remove, JSON: %v %q", err, out)
	}
	waitRaft(t, c, group, "2 voters", allVotersUp(2))
	raftMustRun(t, c, "-y", "-c", "cluster.raft.remove -group "+group+" "+other)
	l = waitRaft(t, c, group, "1 voter", allVotersUp(1))
	_, errs, code = raftSh(t, c, "-y", "-c", "cluster.raft.remove -group "+group+" "+l.Leader)
	if code != 1 || !strings.Contains(errs, "last voter") {
		t.Fatalf("remove the last voter: exit %d %q", code, errs)
	}
	out = raftMustRun(t, c, "-c", "cluster.raft.add -group "+group+" "+victim+"; cluster.raft.add -group "+group+" "+other+" "+otherRaft)
	if !strings.Contains(out, "added "+group+" "+victim+" (raft ") || !strings.Contains(out, "added "+group+" "+other+" (raft "+otherRaft+")") || !strings.Contains(out, "(voter)") {
		t.Fatalf("add, text: %q", out)
	}
	l = waitRaft(t, c, group, "3 voters again", allVotersUp(3))
	if l.Leader != leader {
		t.Logf("leader moved from %s to %s while shrinking and growing", leader, l.Leader)
	}
}
