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
		Name:    "cluster.raft.transfer",
		Summary: "hand the leadership of the masters' or filers' Raft group to another voter",
		Usage:   "[-group master|filer] [ID]",
		Help: `Asks the leader to hand leadership to voter ID, or to the most up-to-date
follower when no ID is given (for example before restarting the leader's
machine). Clients retry through the short election; nothing committed is
lost.`,
		New: func(fs *flag.FlagSet) Runner {
			r := &raftTransfer{}
			fs.StringVar(&r.group, "group", "master", "the Raft group: master or filer")
			return r
		},
	})
}

type raftTransfer struct{ group string }

func (r *raftTransfer) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("cluster.raft.transfer", args, 0, 1, "at most one server ID"); err != nil {
		return err
	}
	target := ""
	if len(args) == 1 {
		target = args[0]
	}
	addrs, err := raftGroupAddrs(env, "cluster.raft.transfer", r.group)
	if err != nil {
		return err
	}
	conf, err := raftConfig(ctx, env, r.group, addrs)
	if err != nil {
		return fmt.Errorf("cluster.raft.transfer: %w", err)
	}
	if target != "" && suffrageOf(conf.Servers, target) != "Voter" {
		return fmt.Errorf("cluster.raft.transfer %s: not a voter of the %s group (members: %s); nothing was changed",
			target, r.group, strings.Join(serverIDs(conf.Servers), ", "))
	}
	if target == conf.Id {
		return fmt.Errorf("cluster.raft.transfer %s: it already is the %s leader; nothing was changed", target, r.group)
	}
	resp, err := raftChange(ctx, env, r.group, []string{conf.Id}, func(ctx context.Context, c pb.RaftAdminClient) (*pb.RaftChangeResponse, error) {
		return c.RaftTransferLeadership(ctx, &pb.RaftTransferLeadershipRequest{Id: target})
	})
	if err != nil {
		return fmt.Errorf("cluster.raft.transfer: leadership of the %s group stays with %s: %s", r.group, conf.Id, rpcMessage(err))
	}
	out := changeJSON(r.group, target, resp)
	out.PreviousLeader = conf.Id
	return env.Emit(out, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "leadership of the %s group moved from %s to %s\n", r.group, conf.Id, orDash(resp.Leader))
		return err
	})
}
