package shell

import (
	"context"
	"fmt"
	"slices"

	"github.com/cairn-storage/cairn/internal/pb"
)

// replicaTarget is one replica of one volume, for commands that act on
// every replica.
type replicaTarget struct {
	volume *pb.VolumeStatus
	server string
}

// replicaTargets returns every replica of every volume the master leader
// knows, or of volume vid only (vid > 0), in volume order.
func replicaTargets(ctx context.Context, env *Env, cmd string, vid uint32) ([]replicaTarget, error) {
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	var out []replicaTarget
	found := false
	for _, v := range st.Volumes {
		if vid != 0 && v.Id != vid {
			continue
		}
		found = true
		replicas := slices.Clone(v.Replicas)
		slices.Sort(replicas)
		for _, r := range replicas {
			out = append(out, replicaTarget{volume: v, server: r})
		}
	}
	if vid != 0 && !found {
		return nil, fmt.Errorf("%s: volume %d does not exist (the master leader %s does not know it); see volume.list", cmd, vid, st.Leader)
	}
	return out, nil
}

// serverStatuses asks every server for its volumes in parallel; a server
// that fails has an error instead.
func serverStatuses(ctx context.Context, env *Env, servers []string) map[string]serverAnswer {
	type result struct {
		addr string
		ans  serverAnswer
	}
	results := make(chan result, len(servers)) // buffered: an early return leaks nothing
	for _, addr := range servers {
		go func() {
			var ans serverAnswer
			vc, err := env.volumeClient(addr)
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, statusTimeout)
				ans.status, err = vc.VolumeServerStatus(cctx, &pb.VolumeServerStatusRequest{})
				cancel()
			}
			ans.err = err
			results <- result{addr, ans}
		}()
	}
	out := make(map[string]serverAnswer, len(servers))
	for range servers {
		r := <-results
		out[r.addr] = r.ans
	}
	return out
}

type serverAnswer struct {
	status *pb.VolumeServerStatusResponse
	err    error
}
