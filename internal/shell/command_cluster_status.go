package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:    "cluster.status",
		Summary: "masters, volume servers and filers: Raft state, liveness, free space",
		Usage:   "",
		Help: `Asks every master given with --master and every filer given with
--filer for its Raft state (leader, term, commit and applied index), and the
master leader for the volume servers it knows (address, data center, rack,
alive, free space, volumes). A server that does not answer is listed with
the error; the command fails only when no master answers at all.`,
		New: func(*flag.FlagSet) Runner { return clusterStatus{} },
	})
}

type clusterStatus struct{}

// RaftMemberJSON is one master or filer in cluster.status.
type RaftMemberJSON struct {
	Address      string `json:"address"`
	Reachable    bool   `json:"reachable"`
	Error        string `json:"error,omitempty"`
	IsLeader     bool   `json:"is_leader"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// PeerJSON is one Raft peer as the leader's configuration lists it.
type PeerJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
}

// VolumeServerJSON is one volume server in cluster.status.
type VolumeServerJSON struct {
	URL         string `json:"url"`
	DC          string `json:"dc"`
	Rack        string `json:"rack"`
	Alive       bool   `json:"alive"`
	FreeBytes   uint64 `json:"free_bytes"`
	MaxVolumes  uint32 `json:"max_volumes"`
	VolumeCount int    `json:"volume_count"`
	Draining    bool   `json:"draining"` // being evacuated: gets no new volumes
}

// ClusterStatusJSON is the JSON output of cluster.status.
type ClusterStatusJSON struct {
	Masters      []RaftMemberJSON   `json:"masters"`
	MasterLeader string             `json:"master_leader"`
	MasterPeers  []PeerJSON         `json:"master_peers"`
	Servers      []VolumeServerJSON `json:"volume_servers"`
	Filers       []RaftMemberJSON   `json:"filers"`
	FilerPeers   []PeerJSON         `json:"filer_peers"`
}

func (clusterStatus) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("cluster.status", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	out := ClusterStatusJSON{Masters: []RaftMemberJSON{}, MasterPeers: []PeerJSON{}, Servers: []VolumeServerJSON{}, Filers: []RaftMemberJSON{}, FilerPeers: []PeerJSON{}}
	var leader *pb.ClusterStatusResponse
	answered := 0
	for _, addr := range env.Masters {
		m := RaftMemberJSON{Address: addr}
		st, err := env.masterStatus(ctx, addr)
		if err != nil {
			m.Error = rpcMessage(err)
		} else {
			answered++
			m.Reachable, m.IsLeader, m.Leader = true, st.IsLeader, st.Leader
			m.Term, m.CommitIndex, m.AppliedIndex = st.Term, st.CommitIndex, st.AppliedIndex
			if st.IsLeader {
				leader = st
			}
		}
		out.Masters = append(out.Masters, m)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if leader == nil && answered > 0 {
		// The leader may not be in --master; ask it directly.
		if st, err := env.leaderStatus(ctx); err == nil {
			leader = st
		}
	}
	if leader != nil {
		out.MasterLeader = leader.Leader
		for _, p := range leader.Peers {
			out.MasterPeers = append(out.MasterPeers, PeerJSON{ID: p.Id, Address: p.Address, Suffrage: p.Suffrage})
		}
		count := map[string]int{}
		for _, v := range leader.Volumes {
			for _, r := range v.Replicas {
				count[r]++
			}
		}
		for _, s := range leader.Servers {
			out.Servers = append(out.Servers, VolumeServerJSON{
				URL: s.Url, DC: s.Dc, Rack: s.Rack, Alive: s.Alive, FreeBytes: s.FreeBytes,
				MaxVolumes: s.MaxVolumes, VolumeCount: count[s.Url], Draining: s.Draining,
			})
		}
	}
	for _, addr := range env.Filers {
		f := RaftMemberJSON{Address: addr}
		st, err := filerStatus(ctx, env, addr)
		if err != nil {
			f.Error = rpcMessage(err)
		} else {
			f.Reachable, f.IsLeader, f.Leader = true, st.IsLeader, st.Leader
			f.Term, f.CommitIndex, f.AppliedIndex = st.Term, st.CommitIndex, st.AppliedIndex
			if st.IsLeader && len(out.FilerPeers) == 0 {
				for _, p := range st.Peers {
					out.FilerPeers = append(out.FilerPeers, PeerJSON{ID: p.Id, Address: p.Address, Suffrage: p.Suffrage})
				}
			}
		}
		out.Filers = append(out.Filers, f)
	}
	if err := env.Emit(out, func(w io.Writer) error { return printClusterStatus(w, &out) }); err != nil {
		return err
	}
	switch {
	case answered == 0:
		return fmt.Errorf("cluster.status: no master answered (%s); check --master and that the masters are running", strings.Join(env.Masters, ","))
	case leader == nil:
		return fmt.Errorf("cluster.status: the masters have no leader; check that a majority of them is running and can reach each other")
	}
	return nil
}

func filerStatus(ctx context.Context, env *Env, addr string) (*pb.FilerStatusResponse, error) {
	fc, err := env.filerClientAt(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return fc.FilerStatus(ctx, &pb.FilerStatusRequest{})
}

func printClusterStatus(w io.Writer, s *ClusterStatusJSON) error {
	printMembers := func(title string, ms []RaftMemberJSON, peers []PeerJSON) {
		fmt.Fprintf(w, "%s\n", title)
		tw := newTable(w)
		fmt.Fprintf(tw, "  ADDRESS\tROLE\tLEADER\tTERM\tCOMMIT\tAPPLIED\n")
		for _, m := range ms {
			if !m.Reachable {
				fmt.Fprintf(tw, "  %s\tunreachable\t-\t-\t-\t-\t(%s)\n", m.Address, m.Error)
				continue
			}
			role := "follower"
			if m.IsLeader {
				role = "leader"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\n", m.Address, role, orDash(m.Leader), m.Term, m.CommitIndex, m.AppliedIndex)
		}
		tw.Flush()
		if len(peers) > 0 {
			var ps []string
			for _, p := range peers {
				ps = append(ps, fmt.Sprintf("%s (%s)", p.Address, strings.ToLower(p.Suffrage)))
			}
			fmt.Fprintf(w, "  raft peers: %s\n", strings.Join(ps, ", "))
		}
	}
	printMembers("Masters", s.Masters, s.MasterPeers)
	fmt.Fprintf(w, "\nVolume servers\n")
	tw := newTable(w)
	fmt.Fprintf(tw, "  URL\tDC\tRACK\tALIVE\tFREE\tVOLUMES\n")
	for _, v := range s.Servers {
		alive := yesNo(v.Alive)
		if v.Draining {
			alive += " (draining)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d/%d\n", v.URL, v.DC, v.Rack, alive, humanBytes(v.FreeBytes), v.VolumeCount, v.MaxVolumes)
	}
	tw.Flush()
	if len(s.Servers) == 0 {
		fmt.Fprintf(w, "  (none known to the master leader)\n")
	}
	if len(s.Filers) > 0 {
		fmt.Fprintln(w)
		printMembers("Filers", s.Filers, s.FilerPeers)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
