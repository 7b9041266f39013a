package master

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairn-storage/cairn/internal/shell"
)

// DefaultRepairAfter is how long a volume server may stay silent before the
// leader re-replicates the volumes it held.
const DefaultRepairAfter = 15 * time.Minute

// repairWait bounds how long one repair step waits for a new copy to be in
// sync before it counts as failed (the next pass plans again).
const repairWait = 10 * time.Minute

// repairLoop is the leader's automatic re-replication: every few seconds to
// a minute it plans, as `cairn shell volume.fix.replication` does, the
// repair of volumes with replicas on servers silent for longer than
// Config.RepairAfter, and applies the plan. Each step copies a healthy
// replica to a live server chosen by the volume's placement, swaps it into
// the replica set in one Raft command, and waits for it to be in sync. A
// server that is only rebooting comes back well within RepairAfter and
// nothing is copied; one that comes back after its volumes were repaired
// holds stray copies, which the same plan deletes once the new replica
// sets are complete and in sync.
func (m *Master) repairLoop(ctx context.Context) {
	after := m.cfg.RepairAfter
	if after <= 0 {
		return
	}
	every := min(max(after/4, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	var quiet repairQuiet
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, since, ok := m.leaderEpoch(); !ok || m.inGrace(since) {
			continue
		}
		m.repairOnce(ctx, &quiet)
	}
}

// repairQuiet remembers the last unrepairable report, so that a problem
// with no fix (no live server to copy to) is logged when it changes or
// every RepairAfter, not on every pass.
type repairQuiet struct {
	last string
	at   time.Time
}

func (m *Master) repairOnce(ctx context.Context, quiet *repairQuiet) {
	progress := &logLines{log: m.log}
	env := shell.NewEnv([]string{m.addr}, nil, m.cfg.Security, &bytes.Buffer{}, progress)
	defer env.Close()

	// Plan first, and only log (and apply) when there is something to do.
	plan, err := shell.PlanFixReplication(ctx, env, m.cfg.RepairAfter, 0)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("automatic repair could not read the cluster state; will retry", "err", err)
		}
		return
	}
	var unfixable []string
	for _, v := range plan.Volumes {
		if v.Error != "" {
			unfixable = append(unfixable, fmt.Sprintf("volume %d (%s): %s", v.ID, v.Problem, v.Error))
		}
	}
	if msg := strings.Join(unfixable, "; "); msg != "" && (msg != quiet.last || time.Since(quiet.at) > m.cfg.RepairAfter) {
		quiet.last, quiet.at = msg, time.Now()
		m.log.Warn("volumes are under-replicated and cannot be repaired yet; add or bring back volume servers with free slots in the right racks",
			"volumes", msg)
	}
	if len(plan.Plan) == 0 {
		return
	}
	m.log.Warn("re-replicating volumes whose replicas are on servers silent for too long", "silent_for_more_than", m.cfg.RepairAfter, "steps", len(plan.Plan))
	done, _ := shell.ApplyFixReplication(ctx, env, &plan, repairWait)
	m.metrics.repairSteps.WithLabelValues("done").Add(float64(done))
	m.metrics.repairSteps.WithLabelValues("failed").Add(float64(len(plan.Plan) - done))
	if done < len(plan.Plan) {
		m.log.Warn("automatic repair finished with failed steps; the next pass plans again", "done", done, "failed", len(plan.Plan)-done)
		return
	}
	m.log.Info("automatic repair finished", "steps", done)
}

// logLines turns the shell's progress lines into log records.
type logLines struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" {
			l.log.Info("repair: " + line)
		}
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
