package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:    "volume.fix.replication",
		Summary: "list under-replicated volumes and copy them back to full replica count",
		Usage:   "[-apply] [-grace 15m] [-volumeId N] [-wait 10m]",
		Help: `A volume is under-replicated when its replica set is smaller than its
placement xyz asks for, or when some of its replicas are on volume servers
the master leader has not heard from for longer than -grace (such a
replica counts as lost; a server silent for less is only reported, since
it may be rebooting).

Without -apply the command lists those volumes and the plan: for each
missing replica, which healthy replica is copied to which live server,
chosen to honour the placement (z other servers in the main rack, y other
racks, x other data centers) and preferring the least loaded servers.

With -apply it runs the plan, one step at a time, with progress on stderr.
A step copies the volume (CopyVolume: every record verified, written under
a temporary name, fsynced, renamed), then adds the new server to the
replica set and drops a lost replica in one master command, then waits for
the replicas to be in sync (the new copy pulls the writes made during the
copy). Copies that live servers hold outside a volume's replica set (a
replica forgotten while its server was down, an interrupted copy) are
deleted, but only while the volume has all its replicas live and in sync. Ctrl-C stops at the next step boundary; running the command again
re-plans from the current state and finishes the job.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeFixReplication{}
			fs.BoolVar(&c.apply, "apply", false, "execute the plan (default: only print it)")
			fs.DurationVar(&c.grace, "grace", 15*time.Minute, "a replica on a server silent longer than this is lost and replaced")
			fs.UintVar(&c.vid, "volumeId", 0, "only this volume (0: all)")
			fs.DurationVar(&c.wait, "wait", 10*time.Minute, "how long a step waits for the replicas to be in sync")
			return c
		},
	})
}

type volumeFixReplication struct {
	apply       bool
	grace, wait time.Duration
	vid         uint
}

// UnderReplicatedJSON is one volume volume.fix.replication found short of
// replicas.
type UnderReplicatedJSON struct {
	ID          uint32   `json:"id"`
	Collection  string   `json:"collection"`
	Replication string   `json:"replication"`
	Wanted      int      `json:"wanted"`
	Replicas    []string `json:"replicas"`
	Lost        []string `json:"lost"` // on servers silent longer than the grace period
	Down        []string `json:"down"` // on servers silent for less; waited for
	Problem     string   `json:"problem"`
	Error       string   `json:"error,omitempty"` // why no plan could be made
}

// FixReplicationJSON is the output of volume.fix.replication.
type FixReplicationJSON struct {
	Volumes []UnderReplicatedJSON `json:"volumes"`
	Plan    []StepJSON            `json:"plan"`
	Applied bool                  `json:"applied"`
}

func (c *volumeFixReplication) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.fix.replication", args, 0, 0, "only flags"); err != nil {
		return err
	}
	if c.grace < 0 || c.wait <= 0 {
		return fmt.Errorf("%w: volume.fix.replication: -grace must be >= 0 and -wait > 0", errUsage)
	}
	out, err := PlanFixReplication(ctx, env, c.grace, uint32(c.vid))
	if err != nil {
		return fmt.Errorf("volume.fix.replication: %w", err)
	}
	if c.apply && len(out.Plan) > 0 {
		done, interrupted := ApplyFixReplication(ctx, env, &out, c.wait)
		if err := env.Emit(out, func(w io.Writer) error { return printFixReplication(w, &out) }); err != nil {
			return err
		}
		if interrupted {
			return fmt.Errorf("volume.fix.replication: interrupted after %d of %d steps; every volume is consistent, run it again to finish", done, len(out.Plan))
		}
		if done < len(out.Plan) {
			return fmt.Errorf("volume.fix.replication: %d of %d steps failed (see above); fix the cause and run it again", len(out.Plan)-done, len(out.Plan))
		}
		return nil
	}
	if err := env.Emit(out, func(w io.Writer) error { return printFixReplication(w, &out) }); err != nil {
		return err
	}
	for _, v := range out.Volumes {
		if v.Error != "" {
			return fmt.Errorf("volume.fix.replication: no plan for some volumes (see above)")
		}
	}
	return nil
}

// planFixReplication finds under-replicated volumes (all, or vid) and plans
// their repair. Planned copies count towards the servers' load, so one run
// spreads new copies over the servers.
func planFixReplication(t *topology, grace time.Duration, vid uint32) FixReplicationJSON {
	out := FixReplicationJSON{Volumes: []UnderReplicatedJSON{}, Plan: []StepJSON{}}
	for _, v := range t.Volumes {
		if vid != 0 && v.Id != vid {
			continue
		}
		p, err := parsePlacement(v.Replication)
		if err != nil {
			continue
		}
		u := UnderReplicatedJSON{ID: v.Id, Collection: v.Collection, Replication: v.Replication,
			Wanted: p.copies(), Replicas: slices.Clone(v.Replicas), Lost: []string{}, Down: []string{}}
		var kept []string
		for _, r := range v.Replicas {
			s := t.Servers[r]
			switch {
			case s != nil && s.Alive:
				kept = append(kept, r)
			case s == nil || s.Silent > grace:
				u.Lost = append(u.Lost, r)
			default:
				u.Down = append(u.Down, r)
				kept = append(kept, r)
			}
		}
		missing := p.copies() - len(kept)
		if missing <= 0 && len(u.Lost) == 0 {
			if len(u.Down) > 0 {
				u.Problem = fmt.Sprintf("replicas on %s are down for less than the grace period %v; waiting for them", strings.Join(u.Down, ","), grace)
				out.Volumes = append(out.Volumes, u)
			}
			continue
		}
		u.Problem = fmt.Sprintf("%d of %d replicas", len(v.Replicas)-len(u.Lost), p.copies())
		if len(u.Lost) > 0 {
			u.Problem += fmt.Sprintf(", lost on %s", strings.Join(u.Lost, ","))
		}
		if len(u.Down) > 0 {
			u.Problem += fmt.Sprintf(", down on %s", strings.Join(u.Down, ","))
		}
		steps, err := planVolumeRepair(t, v, p, kept, u.Lost)
		if err != nil {
			u.Error = err.Error()
		}
		out.Volumes = append(out.Volumes, u)
		out.Plan = append(out.Plan, steps...)
	}
	out.Plan = append(out.Plan, planStrays(t, vid)...)
	return out
}

// planStrays plans deleting copies that live servers hold outside their
// volume's replica set, but only for volumes whose every replica is live
// and in sync, with the full count: then the stray copy is not needed for
// anything.
func planStrays(t *topology, vid uint32) []StepJSON {
	var steps []StepJSON
	for _, v := range t.Volumes {
		if vid != 0 && v.Id != vid {
			continue
		}
		p, err := parsePlacement(v.Replication)
		if err != nil || len(v.Replicas) < p.copies() || slices.ContainsFunc(v.Replicas, func(r string) bool { return !t.healthy(r, v.Id) }) {
			continue
		}
		var urls []string
		for u, s := range t.Servers {
			if s.Alive && s.Holds != nil && s.Holds[v.Id] != nil && !slices.Contains(v.Replicas, u) {
				urls = append(urls, u)
			}
		}
		slices.Sort(urls)
		for _, u := range urls {
			steps = append(steps, StepJSON{Volume: v.Id, Collection: v.Collection, Replication: v.Replication,
				Drop: u, Stray: true, Expect: slices.Clone(v.Replicas), Why: "unused copy outside the replica set"})
		}
	}
	return steps
}

// planVolumeRepair plans the copies that bring v back to its placement,
// each replacing one lost replica while there are some.
func planVolumeRepair(t *topology, v *pb.VolumeStatus, p placement, kept, lost []string) ([]StepJSON, error) {
	src := t.source(v, kept)
	if src == "" {
		return nil, fmt.Errorf("no live replica holds volume %d (replicas %s); bring one of its servers back", v.Id, strings.Join(v.Replicas, ","))
	}
	targets, err := p.fill(t.servers(kept), t.candidates(v.Id, v.Replicas))
	if err != nil {
		return nil, fmt.Errorf("volume %d: %v", v.Id, err)
	}
	set := slices.Clone(v.Replicas)
	var steps []StepJSON
	for i := 0; i < max(len(targets), len(lost)); i++ {
		s := StepJSON{Volume: v.Id, Collection: v.Collection, Replication: v.Replication, Expect: slices.Clone(set)}
		if i < len(targets) {
			s.Source, s.Target = src, targets[i].URL
			targets[i].Count++
			s.Why = "under-replicated"
		}
		if i < len(lost) {
			s.Drop, s.DropDead = lost[i], true
			s.Why = "replica lost with its server"
		}
		steps = append(steps, s)
		set = s.newSet()
	}
	return steps, nil
}

func printFixReplication(w io.Writer, out *FixReplicationJSON) error {
	if len(out.Volumes) == 0 {
		fmt.Fprintln(w, "every volume has its full replica count")
		if len(out.Plan) > 0 {
			printSteps(w, out.Plan, out.Applied)
		}
		return nil
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "VOLUME\tCOLLECTION\tREPL\tREPLICAS\tPROBLEM\n")
	for _, v := range out.Volumes {
		problem := v.Problem
		if v.Error != "" {
			problem += "; cannot plan: " + v.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.ID, orDash(v.Collection), v.Replication, strings.Join(v.Replicas, ","), problem)
	}
	tw.Flush()
	printSteps(w, out.Plan, out.Applied)
	if !out.Applied && len(out.Plan) > 0 {
		fmt.Fprintln(w, "run volume.fix.replication -apply to execute the plan")
	}
	return nil
}

// PlanFixReplication loads the cluster's state and plans the repair of
// every under-replicated volume (all, or vid): replicas on servers silent
// longer than grace count as lost. ApplyFixReplication runs the plan. The
// command and the master leader's automatic repair both use them, so they
// are one code path.
func PlanFixReplication(ctx context.Context, env *Env, grace time.Duration, vid uint32) (FixReplicationJSON, error) {
	t, err := loadTopology(ctx, env)
	if err != nil {
		return FixReplicationJSON{}, err
	}
	if vid != 0 && !slices.ContainsFunc(t.Volumes, func(v *pb.VolumeStatus) bool { return v.Id == vid }) {
		return FixReplicationJSON{}, fmt.Errorf("volume %d does not exist (the master leader %s does not know it); see volume.list", vid, t.Leader)
	}
	return planFixReplication(t, grace, vid), nil
}

// ApplyFixReplication runs the steps of out's plan one at a time, with
// progress lines on env.Err, marking each done or giving its error, and
// returns how many were done and whether ctx ended the run.
func ApplyFixReplication(ctx context.Context, env *Env, out *FixReplicationJSON, wait time.Duration) (done int, interrupted bool) {
	out.Applied = true
	return applySteps(ctx, env, "volume.fix.replication", out.Plan, wait)
}
