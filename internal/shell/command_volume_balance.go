package shell

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:        "volume.balance",
		Summary:     "even out the number of replicas per volume server, respecting placement",
		Usage:       "[-apply] [-wait 10m]",
		Destructive: true,
		Help: `Plans moves of replicas from the live volume servers holding the most to
those holding the fewest, until no two differ by more than one (or no
allowed move is left). A move keeps the volume's placement satisfied and
only moves replicas of volumes whose replicas are all live and in sync;
volumes short of replicas are left to volume.fix.replication.

With -apply (after confirmation) each move copies the volume to the new
server, adds it to the replica set, waits until every replica is in sync,
then removes the old replica from the set and deletes its file. Ctrl-C
stops at the next step boundary; running the command again re-plans.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeBalance{}
			fs.BoolVar(&c.apply, "apply", false, "execute the plan (default: only print it)")
			fs.DurationVar(&c.wait, "wait", 10*time.Minute, "how long a step waits for the replicas to be in sync")
			return c
		},
	})
}

type volumeBalance struct {
	apply bool
	wait  time.Duration
}

// BalanceJSON is the output of volume.balance: replicas per live server
// before and after the plan.
type BalanceJSON struct {
	Before  map[string]int `json:"before"`
	After   map[string]int `json:"after"`
	Plan    []StepJSON     `json:"plan"`
	Applied bool           `json:"applied"`
}

func (c *volumeBalance) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.balance", args, 0, 0, "only flags"); err != nil {
		return err
	}
	if c.wait <= 0 {
		return fmt.Errorf("%w: volume.balance: -wait must be > 0", errUsage)
	}
	t, err := loadTopology(ctx, env)
	if err != nil {
		return fmt.Errorf("volume.balance: %w", err)
	}
	out := planBalance(t)
	if !c.apply || len(out.Plan) == 0 {
		return env.Emit(out, func(w io.Writer) error { return printBalance(w, &out) })
	}
	if err := env.Confirm(fmt.Sprintf("move %d replicas between volume servers, deleting each old copy once the new one is in sync", len(out.Plan))); err != nil {
		return fmt.Errorf("volume.balance: %w", err)
	}
	out.Applied = true
	done, interrupted := applySteps(ctx, env, "volume.balance", out.Plan, c.wait)
	if err := env.Emit(out, func(w io.Writer) error { return printBalance(w, &out) }); err != nil {
		return err
	}
	switch {
	case interrupted:
		return fmt.Errorf("volume.balance: interrupted after %d of %d moves; every volume is consistent, run it again to finish", done, len(out.Plan))
	case done < len(out.Plan):
		return fmt.Errorf("volume.balance: %d of %d moves failed (see above); run it again to re-plan", len(out.Plan)-done, len(out.Plan))
	}
	return nil
}

// planBalance moves replicas greedily from the fullest live server to the
// emptiest one that may take one of its volumes, until the spread is at
// most one. Only volumes whose replicas are all healthy are moved.
func planBalance(t *topology) BalanceJSON {
	out := BalanceJSON{Before: map[string]int{}, After: map[string]int{}, Plan: []StepJSON{}}
	var live []*topoServer
	for _, s := range t.Servers {
		if s.Alive && !s.Draining && s.Holds != nil {
			live = append(live, s)
			out.Before[s.URL] = s.Count
		}
	}
	sets := map[uint32][]string{}
	var movable []*pb.VolumeStatus
	for _, v := range t.Volumes {
		ok := true
		for _, r := range v.Replicas {
			ok = ok && t.healthy(r, v.Id)
		}
		p, err := parsePlacement(v.Replication)
		if ok && err == nil && len(v.Replicas) >= p.copies() && p.satisfied(t.servers(v.Replicas)) {
			movable = append(movable, v)
			sets[v.Id] = slices.Clone(v.Replicas)
		}
	}
	for range 10000 { // bounded: every move lowers the spread's sum of squares
		slices.SortFunc(live, func(a, b *topoServer) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.URL, b.URL)) })
		step, ok := balanceMove(t, live, movable, sets)
		if !ok {
			break
		}
		out.Plan = append(out.Plan, step)
		sets[step.Volume] = step.newSet()
	}
	for _, s := range live {
		out.After[s.URL] = s.Count
	}
	return out
}

// balanceMove finds one move from a fuller server (live sorted fullest
// first) to one holding at least two fewer, and books it.
func balanceMove(t *topology, live []*topoServer, movable []*pb.VolumeStatus, sets map[uint32][]string) (StepJSON, bool) {
	for _, from := range live {
		for i := len(live) - 1; i >= 0; i-- {
			to := live[i]
			if from.Count-to.Count <= 1 {
				break
			}
			if to.Count >= to.Max {
				continue
			}
			for _, v := range movable {
				set := sets[v.Id]
				if !slices.Contains(set, from.URL) || slices.Contains(set, to.URL) {
					continue
				}
				if h := to.Holds[v.Id]; h != nil {
					continue // a stray copy there; leave it to the operator
				}
				p, _ := parsePlacement(v.Replication)
				next := append(slices.DeleteFunc(slices.Clone(set), func(r string) bool { return r == from.URL }), to.URL)
				if !p.satisfied(t.servers(next)) {
					continue
				}
				src := from.URL
				if !t.healthy(src, v.Id) {
					src = t.source(v, set)
				}
				from.Count--
				to.Count++
				return StepJSON{Volume: v.Id, Collection: v.Collection, Replication: v.Replication, Source: src,
					Target: to.URL, Drop: from.URL, Expect: slices.Clone(set),
					Why: fmt.Sprintf("%s holds %d replicas, %s %d", from.URL, from.Count+1, to.URL, to.Count-1)}, true
			}
		}
	}
	return StepJSON{}, false
}

func printBalance(w io.Writer, out *BalanceJSON) error {
	var urls []string
	for u := range out.Before {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	tw := newTable(w)
	fmt.Fprintf(tw, "SERVER\tREPLICAS NOW\tAFTER THE PLAN\n")
	for _, u := range urls {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", u, out.Before[u], out.After[u])
	}
	tw.Flush()
	printSteps(w, out.Plan, out.Applied)
	if !out.Applied && len(out.Plan) > 0 {
		fmt.Fprintln(w, "run volume.balance -apply to execute the plan")
	}
	return nil
}
