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
		Name:    "cluster.raft.add",
		Summary: "add a voter to the masters' or filers' Raft group",
		Usage:   "[-group master|filer] ID [RAFT_ADDRESS]",
		Help: `Adds the server with HTTP address ID (host:port) to the group as a voter,
or makes an existing non-voter a voter. Its Raft address is ID's port +
20000 unless RAFT_ADDRESS is given. The server must be running: the leader
replicates the log to it, and from then on it counts for the quorum. Adding
a member that already is a voter at that address changes nothing.`,
		New: func(fs *flag.FlagSet) Runner {
			r := &raftAdd{}
			fs.StringVar(&r.group, "group", "master", "the Raft group: master or filer")
			return r
		},
	})
}

type raftAdd struct{ group string }

// RaftChangeJSON is the JSON output of the cluster.raft change commands.
type RaftChangeJSON struct {
	Group              string     `json:"group"`
	Server             string     `json:"server,omitempty"`
	Leader             string     `json:"leader"`
	PreviousLeader     string     `json:"previous_leader,omitempty"`
	ConfigurationIndex uint64     `json:"configuration_index"`
	Servers            []PeerJSON `json:"servers"`
}

func changeJSON(group, server string, resp *pb.RaftChangeResponse) RaftChangeJSON {
	out := RaftChangeJSON{Group: group, Server: server, Leader: resp.Leader, ConfigurationIndex: resp.ConfigurationIndex, Servers: []PeerJSON{}}
	for _, s := range resp.Servers {
		out.Servers = append(out.Servers, PeerJSON{ID: s.Id, Address: s.Address, Suffrage: s.Suffrage})
	}
	return out
}

func (r *raftAdd) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("cluster.raft.add", args, 1, 2, "ID and optionally RAFT_ADDRESS"); err != nil {
		return err
	}
	addrs, err := raftGroupAddrs(env, "cluster.raft.add", r.group)
	if err != nil {
		return err
	}
	req := &pb.RaftAddVoterRequest{Id: args[0]}
	if len(args) == 2 {
		req.Address = args[1]
	}
	resp, err := raftChange(ctx, env, r.group, addrs, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftAddVoter(ctx, req)
	})
	if err != nil {
		return fmt.Errorf("cluster.raft.add %s: %s; nothing was changed unless cluster.raft.list shows it", args[0], rpcMessage(err))
	}
	out := changeJSON(r.group, args[0], resp)
	return env.Emit(out, func(w io.Writer) error {
		addr := ""
		for _, s := range resp.Servers {
			if s.Id == args[0] {
				addr = s.Address
			}
		}
		_, err := fmt.Fprintf(w, "added %s %s (raft %s) as a voter; the group now has %s\n",
			r.group, args[0], addr, strings.Join(serverIDs(resp.Servers), ", "))
		return err
	})
}
