package shell

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

func init() {
	register(&Command{
		Name:        "volume.evacuate",
		Summary:     "move every replica off a volume server (before taking it out)",
		Usage:       "-server ADDR [-apply | -cancel] [-wait 10m]",
		Destructive: true,
		Help: `Plans, for every volume with a replica on ADDR, a new home for that replica
that honours the volume's placement (least loaded servers first), and a
healthy replica to copy from. Without -apply it only prints the plan.

With -apply (after confirmation) the master first marks ADDR as draining:
it places no new volume and no new replica there (volume.list shows it),
so volumes created meanwhile do not land on it. Then each step copies the
volume to the new server (CopyVolume: verified, fsynced, renamed), adds it
to the replica set, waits until every replica is in sync (the new copy
has pulled the writes made during the copy), then removes ADDR from the
replica set and deletes the volume file on ADDR. The volume keeps its full replica count at every
moment. When ADDR is dead its replica is replaced in the same master
command that adds the new one. Ctrl-C stops at the next step boundary;
running the command again finishes the job. ADDR stays draining until
volume.evacuate -server ADDR -cancel (for a server that is kept after all).`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeEvacuate{}
			fs.StringVar(&c.server, "server", "", "the volume server to empty (HTTP address host:port)")
			fs.BoolVar(&c.apply, "apply", false, "mark the server draining and execute the plan (default: only print it)")
			fs.BoolVar(&c.cancel, "cancel", false, "stop draining the server: it may receive volumes again")
			fs.DurationVar(&c.wait, "wait", 10*time.Minute, "how long a step waits for the replicas to be in sync")
			return c
		},
	})
}

type volumeEvacuate struct {
	server        string
	apply, cancel bool
	wait          time.Duration
}

// evacuateRounds bounds how often -apply re-plans for replicas that
// appeared on the server while it ran (volumes grown before the master
// knew it was draining).
const evacuateRounds = 3

// EvacuateJSON is the output of volume.evacuate.
type EvacuateJSON struct {
	Server  string     `json:"server"`
	Plan    []StepJSON `json:"plan"`
	Errors  []string   `json:"errors"` // volumes no plan could be made for
	Applied bool       `json:"applied"`
}

func (c *volumeEvacuate) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.evacuate", args, 0, 0, "only flags"); err != nil {
		return err
	}
	if c.server == "" {
		return fmt.Errorf("%w: volume.evacuate needs -server ADDR (see help volume.evacuate)", errUsage)
	}
	if c.wait <= 0 {
		return fmt.Errorf("%w: volume.evacuate: -wait must be > 0", errUsage)
	}
	if c.apply && c.cancel {
		return fmt.Errorf("%w: volume.evacuate: -apply and -cancel exclude each other", errUsage)
	}
	t, err := loadTopology(ctx, env)
	if err != nil {
		return fmt.Errorf("volume.evacuate: %w", err)
	}
	if t.Servers[c.server] == nil {
		return fmt.Errorf("volume.evacuate: %s is not a volume server the master leader %s knows; see cluster.status", c.server, t.Leader)
	}
	if c.cancel {
		if err := setDraining(ctx, env, c.server, false); err != nil {
			return fmt.Errorf("volume.evacuate: %s: %w", c.server, err)
		}
		fmt.Fprintf(env.Out, "%s is no longer draining; it may receive volumes again\n", c.server)
		return nil
	}
	out := planEvacuate(t, c.server)
	if !c.apply {
		if err := env.Emit(out, func(w io.Writer) error { return printEvacuate(w, &out) }); err != nil {
			return err
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("volume.evacuate: no new home for %d replicas on %s (see above)", len(out.Errors), c.server)
		}
		return nil
	}
	if err := env.Confirm(fmt.Sprintf("move %d replicas off %s and delete them there", len(out.Plan), c.server)); err != nil {
		return fmt.Errorf("volume.evacuate: %w", err)
	}
	if err := setDraining(ctx, env, c.server, true); err != nil {
		return fmt.Errorf("volume.evacuate: marking %s draining: %w", c.server, err)
	}
	out.Applied = true
	var steps []StepJSON
	done, interrupted := 0, false
	for round := 0; round < evacuateRounds && len(out.Plan) > 0 && !interrupted; round++ {
		if round > 0 {
			env.Progressf("volume.evacuate: %d more replicas appeared on %s meanwhile; moving them too", len(out.Plan), c.server)
		}
		var n int
		n, interrupted = applySteps(ctx, env, "volume.evacuate", out.Plan, c.wait)
		done += n
		steps = append(steps, out.Plan...)
		if n < len(out.Plan) || interrupted {
			break
		}
		if t, err = loadTopology(ctx, env); err != nil {
			break
		}
		errs := out.Errors
		out = planEvacuate(t, c.server)
		out.Errors = append(errs, out.Errors...)
	}
	out.Plan, out.Applied = steps, true
	if err := env.Emit(out, func(w io.Writer) error { return printEvacuate(w, &out) }); err != nil {
		return err
	}
	switch {
	case interrupted:
		return fmt.Errorf("volume.evacuate: interrupted after %d of %d steps; every volume is consistent and %s stays draining, run it again to finish", done, len(steps), c.server)
	case done < len(steps):
		return fmt.Errorf("volume.evacuate: %d of %d steps failed (see above); fix the cause and run it again", len(steps)-done, len(steps))
	}
	if len(out.Errors) > 0 {
		return fmt.Errorf("volume.evacuate: no new home for %d replicas on %s (see above)", len(out.Errors), c.server)
	}
	return nil
}

// planEvacuate plans one step per volume with a replica on server.
func planEvacuate(t *topology, server string) EvacuateJSON {
	out := EvacuateJSON{Server: server, Plan: []StepJSON{}, Errors: []string{}}
	srv := t.Servers[server]
	for _, v := range t.Volumes {
		if !slices.Contains(v.Replicas, server) {
			continue
		}
		p, err := parsePlacement(v.Replication)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("volume %d: %v", v.Id, err))
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(v.Replicas), func(r string) bool { return r == server })
		s := StepJSON{Volume: v.Id, Collection: v.Collection, Replication: v.Replication, Expect: slices.Clone(v.Replicas),
			Drop: server, DropDead: !srv.Alive, Why: "evacuating " + server}
		targets, err := p.fill(t.servers(kept), t.candidates(v.Id, v.Replicas, server))
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("volume %d: %v", v.Id, err))
			continue
		}
		if len(targets) > 0 {
			s.Target = targets[0].URL
			s.Source = t.source(v, kept)
			if s.Source == "" && srv.Alive && srv.Holds != nil && srv.Holds[v.Id] != nil {
				s.Source = server
			}
			if s.Source == "" {
				out.Errors = append(out.Errors, fmt.Sprintf("volume %d: no live replica to copy from (replicas %s)", v.Id, strings.Join(v.Replicas, ",")))
				continue
			}
			targets[0].Count++
		}
		out.Plan = append(out.Plan, s)
	}
	return out
}

func printEvacuate(w io.Writer, out *EvacuateJSON) error {
	fmt.Fprintf(w, "server %s: %d replicas to move\n", out.Server, len(out.Plan)+len(out.Errors))
	for _, e := range out.Errors {
		fmt.Fprintf(w, "  cannot plan: %s\n", e)
	}
	printSteps(w, out.Plan, out.Applied)
	if !out.Applied && len(out.Plan) > 0 {
		fmt.Fprintln(w, "run volume.evacuate -server "+out.Server+" -apply to execute the plan")
	}
	return nil
}
