package shell

// Planning and executing replica moves, shared by volume.fix.replication,
// volume.evacuate and volume.balance. A plan is a list of steps; each step
// adds at most one replica (copied from a healthy one with CopyVolume, then
// registered with the master's UpdateReplicas) and removes at most one.
// Every step checks, through UpdateReplicas' expect, that the volume still
// has the replica set it was planned from, so a stale plan fails instead of
// doing harm, and running a command again re-plans from the cluster as it is.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
)

// stepTimeout bounds the master and volume server calls of one step that
// are not the copy itself.
const stepTimeout = 30 * time.Second

// topoServer is a volume server as the planners see it.
type topoServer struct {
	URL, DC, Rack string
	Alive         bool
	Draining      bool          // being evacuated: receives nothing new
	Silent        time.Duration // since the leader last heard from it
	Max           int
	Count         int                       // replicas it holds per the master, plus planned ones
	Holds         map[uint32]*pb.VolumeInfo // volumes the server reports; nil if it did not answer
	Err           error                     // why it did not answer
}

// topology is the cluster as the master leader and the servers report it.
type topology struct {
	Leader  string
	Servers map[string]*topoServer
	Volumes []*pb.VolumeStatus // by id
}

// loadTopology asks the master leader for servers and volumes and every
// live server for the volumes it holds.
func loadTopology(ctx context.Context, env *Env) (*topology, error) {
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return nil, err
	}
	t := &topology{Leader: st.Leader, Servers: map[string]*topoServer{}, Volumes: slices.Clone(st.Volumes)}
	slices.SortFunc(t.Volumes, func(a, b *pb.VolumeStatus) int { return cmp.Compare(a.Id, b.Id) })
	var live []string
	for _, s := range st.Servers {
		t.Servers[s.Url] = &topoServer{URL: s.Url, DC: s.Dc, Rack: s.Rack, Alive: s.Alive, Draining: s.Draining,
			Silent: time.Duration(s.SilentMs) * time.Millisecond, Max: int(s.MaxVolumes)}
		if s.Alive {
			live = append(live, s.Url)
		}
	}
	for _, v := range t.Volumes {
		for _, r := range v.Replicas {
			if s := t.Servers[r]; s != nil {
				s.Count++
			}
		}
	}
	for addr, ans := range serverStatuses(ctx, env, live) {
		s := t.Servers[addr]
		if ans.err != nil {
			s.Err = errors.New(rpcMessage(ans.err))
			continue
		}
		s.Holds = map[uint32]*pb.VolumeInfo{}
		for _, vi := range ans.status.Volumes {
			s.Holds[vi.Id] = vi
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return t, nil
}

// healthy reports whether server s holds an in-sync, writable copy of vid.
func (t *topology) healthy(s string, vid uint32) bool {
	srv := t.Servers[s]
	if srv == nil || !srv.Alive || srv.Holds == nil {
		return false
	}
	vi := srv.Holds[vid]
	return vi != nil && vi.InSync && !vi.ReadOnly
}

// source picks the replica to copy vid from among candidates: the primary
// if healthy, else another healthy one, else any live one that holds it
// (a copy that is catching up still holds every acknowledged write of a
// volume whose other replicas are lost). "" when none.
func (t *topology) source(v *pb.VolumeStatus, candidates []string) string {
	order := append([]string{v.Primary}, candidates...)
	for _, s := range order {
		if slices.Contains(candidates, s) && t.healthy(s, v.Id) {
			return s
		}
	}
	for _, s := range order {
		if srv := t.Servers[s]; slices.Contains(candidates, s) && srv != nil && srv.Alive && srv.Holds != nil && srv.Holds[v.Id] != nil {
			return s
		}
	}
	return ""
}

// candidates returns the live servers that may receive a new copy of vid:
// answering, not draining, with a free slot, not in set and not excluded,
// least loaded first.
func (t *topology) candidates(vid uint32, set []string, exclude ...string) []*topoServer {
	var out []*topoServer
	for _, s := range t.Servers {
		if !s.Alive || s.Draining || s.Holds == nil || s.Count >= s.Max || slices.Contains(set, s.URL) || slices.Contains(exclude, s.URL) {
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *topoServer) int { return cmp.Or(cmp.Compare(a.Count, b.Count), cmp.Compare(a.URL, b.URL)) })
	return out
}

func (t *topology) servers(urls []string) []*topoServer {
	var out []*topoServer
	for _, u := range urls {
		if s := t.Servers[u]; s != nil {
			out = append(out, s)
		} else {
			out = append(out, &topoServer{URL: u})
		}
	}
	return out
}

// placement is a replica placement "xyz": x copies in other data centers,
// y on other racks of the main data center, z on other servers of the main
// rack.
type placement struct{ DiffDC, DiffRack, SameRack int }

func parsePlacement(s string) (placement, error) {
	if len(s) != 3 || strings.Trim(s, "0123456789") != "" {
		return placement{}, fmt.Errorf("replication %q is not three digits xyz", s)
	}
	return placement{int(s[0] - '0'), int(s[1] - '0'), int(s[2] - '0')}, nil
}

func (p placement) copies() int { return p.DiffDC + p.DiffRack + p.SameRack + 1 }

// fill chooses servers among cands (in preference order) to add to kept so
// that together they satisfy p, adding as few as possible; ties go to the
// least loaded choice. Any rack may be the main one (the rack with z+1
// copies); the kept replicas count wherever they are.
func (p placement) fill(kept, cands []*topoServer) ([]*topoServer, error) {
	type rackKey struct{ dc, rack string }
	var mains []rackKey
	for _, s := range append(slices.Clone(kept), cands...) {
		k := rackKey{s.DC, s.Rack}
		if !slices.Contains(mains, k) {
			mains = append(mains, k)
		}
	}
	var best []*topoServer
	bestLoad, found := 0, false
	for _, main := range mains {
		inRack := 0
		racks := map[string]bool{}
		dcs := map[string]bool{}
		for _, s := range kept {
			switch {
			case s.DC == main.dc && s.Rack == main.rack:
				inRack++
			case s.DC == main.dc:
				racks[s.Rack] = true
			default:
				dcs[s.DC] = true
			}
		}
		var picked []*topoServer
		ok := true
		for range max(0, p.SameRack+1-inRack) {
			i := slices.IndexFunc(cands, func(c *topoServer) bool {
				return c.DC == main.dc && c.Rack == main.rack && !slices.Contains(picked, c)
			})
			if i < 0 {
				ok = false
				break
			}
			picked = append(picked, cands[i])
		}
		for range max(0, p.DiffRack-len(racks)) {
			i := slices.IndexFunc(cands, func(c *topoServer) bool {
				return c.DC == main.dc && c.Rack != main.rack && !racks[c.Rack]
			})
			if !ok || i < 0 {
				ok = false
				break
			}
			racks[cands[i].Rack] = true
			picked = append(picked, cands[i])
		}
		for range max(0, p.DiffDC-len(dcs)) {
			i := slices.IndexFunc(cands, func(c *topoServer) bool { return c.DC != main.dc && !dcs[c.DC] })
			if !ok || i < 0 {
				ok = false
				break
			}
			dcs[cands[i].DC] = true
			picked = append(picked, cands[i])
		}
		if !ok {
			continue
		}
		load := 0
		for _, c := range picked {
			load += c.Count
		}
		if !found || len(picked) < len(best) || (len(picked) == len(best) && load < bestLoad) {
			best, bestLoad, found = picked, load, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no live server with a free slot fits placement %d%d%d next to the kept replicas %s; start a volume server in the right data center or rack, or raise --max on one",
			p.DiffDC, p.DiffRack, p.SameRack, urlList(kept))
	}
	return best, nil
}

// satisfied reports whether the servers in set meet p.
func (p placement) satisfied(set []*topoServer) bool {
	got, err := p.fill(set, nil)
	return err == nil && len(got) == 0
}

func urlList(ss []*topoServer) string {
	var u []string
	for _, s := range ss {
		u = append(u, s.URL)
	}
	if len(u) == 0 {
		return "(none)"
	}
	return strings.Join(u, ",")
}

// StepJSON is one step of a replica plan: copy volume Volume from Source
// to Target and add Target to the replica set, and/or take Drop out of it.
type StepJSON struct {
	Volume      uint32 `json:"volume"`
	Collection  string `json:"collection"`
	Replication string `json:"replication"`
	Source      string `json:"source,omitempty"`
	Target      string `json:"target,omitempty"`
	Drop        string `json:"drop,omitempty"`
	DropDead    bool   `json:"drop_dead,omitempty"` // Drop is lost: forgotten in the same master command as the add, nothing to delete
	// Stray: Drop holds a copy outside the replica set (a replica forgotten
	// while its server was down, or an interrupted copy); the step deletes
	// that unused file.
	Stray  bool     `json:"stray,omitempty"`
	Expect []string `json:"expect"` // the replica set the step was planned from
	Why    string   `json:"why"`
	Done   bool     `json:"done"`
	Error  string   `json:"error,omitempty"`
}

func (s StepJSON) describe() string {
	switch {
	case s.Stray:
		return fmt.Sprintf("volume %d: delete the unused copy on %s (not in the replica set)", s.Volume, s.Drop)
	case s.Target != "" && s.Drop != "" && s.DropDead:
		return fmt.Sprintf("volume %d: copy from %s to %s, replacing lost replica %s", s.Volume, s.Source, s.Target, s.Drop)
	case s.Target != "" && s.Drop != "":
		return fmt.Sprintf("volume %d: move the replica on %s to %s (copy from %s)", s.Volume, s.Drop, s.Target, s.Source)
	case s.Target != "":
		return fmt.Sprintf("volume %d: copy from %s to %s", s.Volume, s.Source, s.Target)
	case s.DropDead:
		return fmt.Sprintf("volume %d: forget lost replica %s", s.Volume, s.Drop)
	}
	return fmt.Sprintf("volume %d: remove the surplus replica on %s", s.Volume, s.Drop)
}

// newSet is the replica set after step s.
func (s StepJSON) newSet() []string {
	out := slices.Clone(s.Expect)
	if s.Target != "" && !slices.Contains(out, s.Target) {
		out = append(out, s.Target)
	}
	return slices.DeleteFunc(out, func(r string) bool { return r == s.Drop })
}

// applySteps runs steps in order, printing progress on env.Err, and marks
// each done or failed. A failed step does not stop the others (their
// volumes differ, or they re-check the replica set themselves). Ctrl-C
// (ctx) stops at the next step boundary: the running copy is abandoned
// (the target keeps nothing) and a copy that finished is still
// registered, so every volume is left consistent. It returns the number
// of steps done and whether it was interrupted.
func applySteps(ctx context.Context, env *Env, cmd string, steps []StepJSON, wait time.Duration) (done int, interrupted bool) {
	for i := range steps {
		if ctx.Err() != nil {
			return done, true
		}
		s := &steps[i]
		env.Progressf("%s: [%d/%d] %s", cmd, i+1, len(steps), s.describe())
		start := time.Now()
		if err := runStep(ctx, env, cmd, s, wait); err != nil {
			s.Error = err.Error()
			env.Progressf("%s: [%d/%d] failed: %v", cmd, i+1, len(steps), err)
			continue
		}
		s.Done = true
		done++
		env.Progressf("%s: [%d/%d] done in %v", cmd, i+1, len(steps), time.Since(start).Round(time.Millisecond))
	}
	return done, ctx.Err() != nil
}

// runStep executes one step; see applySteps.
func runStep(ctx context.Context, env *Env, cmd string, s *StepJSON, wait time.Duration) error {
	// Once data was copied, finish the step even if the operator presses
	// Ctrl-C: each call below is one complete change.
	nctx := context.WithoutCancel(ctx)
	set := slices.Clone(s.Expect)
	if s.Stray {
		return deleteStray(nctx, env, s)
	}
	if s.Target != "" {
		if err := copyReplica(ctx, env, cmd, s); err != nil {
			return err
		}
		req := &pb.UpdateReplicasRequest{VolumeId: s.Volume, Add: []string{s.Target}, Expect: set}
		if s.DropDead {
			req.Remove = []string{s.Drop}
		}
		resp, err := updateReplicas(nctx, env, req)
		if err != nil {
			return fmt.Errorf("registering the copy on %s with the master: %s (the copy stays there unregistered; running %s again replaces it)", s.Target, err, cmd)
		}
		set = resp.Replicas
	} else if s.DropDead {
		if _, err := updateReplicas(nctx, env, &pb.UpdateReplicasRequest{VolumeId: s.Volume, Remove: []string{s.Drop}, Expect: set}); err != nil {
			return fmt.Errorf("forgetting lost replica %s: %s", s.Drop, err)
		}
		return nil
	}
	// Wait for every replica to be in sync: the new copy has caught up with
	// the writes made during the copy, and removing a replica is safe.
	env.Progressf("%s: volume %d: waiting for replicas %s to be in sync", cmd, s.Volume, strings.Join(set, ","))
	if err := waitInSync(ctx, env, s.Volume, set, wait); err != nil {
		if s.Drop != "" && !s.DropDead {
			return fmt.Errorf("%v; %s was not removed, run %s again once they are", err, s.Drop, cmd)
		}
		return err
	}
	if s.Drop == "" || s.DropDead {
		return nil
	}
	if _, err := updateReplicas(nctx, env, &pb.UpdateReplicasRequest{VolumeId: s.Volume, Remove: []string{s.Drop}, Expect: set}); err != nil {
		return fmt.Errorf("removing %s from the replica set: %s", s.Drop, err)
	}
	vc, err := env.volumeClient(s.Drop)
	if err == nil {
		dctx, cancel := context.WithTimeout(nctx, stepTimeout)
		_, err = vc.DeleteVolume(dctx, &pb.DeleteVolumeRequest{VolumeId: s.Volume})
		cancel()
	}
	if err != nil {
		return fmt.Errorf("%s left the replica set of volume %d, but deleting the volume file there failed: %s; the file is no longer used, volume.fix.replication -apply deletes it once the server answers", s.Drop, s.Volume, rpcMessage(err))
	}
	return nil
}

// deleteStray deletes the copy of s.Volume on s.Drop after checking, with
// the master leader, that s.Drop is still not a replica.
func deleteStray(ctx context.Context, env *Env, s *StepJSON) error {
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return err
	}
	for _, v := range st.Volumes {
		if v.Id == s.Volume && slices.Contains(v.Replicas, s.Drop) {
			return fmt.Errorf("%s is a replica of volume %d again; not deleting it", s.Drop, s.Volume)
		}
	}
	vc, err := env.volumeClient(s.Drop)
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, stepTimeout)
		_, err = vc.DeleteVolume(dctx, &pb.DeleteVolumeRequest{VolumeId: s.Volume})
		cancel()
	}
	if err != nil {
		return fmt.Errorf("deleting the unused copy of volume %d on %s: %s", s.Volume, s.Drop, rpcMessage(err))
	}
	return nil
}

// copyReplica copies the volume to s.Target, first deleting a copy the
// target holds outside the replica set (left by an interrupted earlier
// run). A target already in the replica set is an error: the plan is stale.
func copyReplica(ctx context.Context, env *Env, cmd string, s *StepJSON) error {
	vc, err := env.volumeClient(s.Target)
	if err != nil {
		return err
	}
	req := &pb.CopyVolumeRequest{VolumeId: s.Volume, Collection: s.Collection, Replication: s.Replication, Source: s.Source}
	resp, err := vc.CopyVolume(ctx, req)
	if status.Code(err) == codes.AlreadyExists {
		st, serr := env.leaderStatus(ctx)
		if serr != nil {
			return serr
		}
		for _, v := range st.Volumes {
			if v.Id == s.Volume && slices.Contains(v.Replicas, s.Target) {
				return fmt.Errorf("%s is already a replica of volume %d; the plan is stale, run %s again", s.Target, s.Volume, cmd)
			}
		}
		env.Progressf("%s: volume %d: %s holds a copy outside the replica set (an interrupted earlier copy); replacing it", cmd, s.Volume, s.Target)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepTimeout)
		_, err = vc.DeleteVolume(dctx, &pb.DeleteVolumeRequest{VolumeId: s.Volume})
		cancel()
		if err != nil {
			return fmt.Errorf("removing the stray copy of volume %d on %s: %s", s.Volume, s.Target, rpcMessage(err))
		}
		resp, err = vc.CopyVolume(ctx, req)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("copy to %s interrupted; it kept nothing", s.Target)
		}
		return fmt.Errorf("copy from %s to %s: %s", s.Source, s.Target, rpcMessage(err))
	}
	env.Progressf("%s: volume %d: copied %d records (%s) to %s", cmd, s.Volume, resp.Records, humanBytes(resp.Bytes), s.Target)
	return nil
}

// setDraining calls the master leader's SetDraining.
func setDraining(ctx context.Context, env *Env, server string, draining bool) error {
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return err
	}
	mc, err := env.masterClient(st.Leader)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if _, err := mc.SetDraining(ctx, &pb.SetDrainingRequest{Url: server, Draining: draining}); err != nil {
		return errors.New(rpcMessage(err))
	}
	return nil
}

// updateReplicas calls the master leader's UpdateReplicas.
func updateReplicas(ctx context.Context, env *Env, req *pb.UpdateReplicasRequest) (*pb.UpdateReplicasResponse, error) {
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return nil, err
	}
	mc, err := env.masterClient(st.Leader)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	resp, err := mc.UpdateReplicas(ctx, req)
	if err != nil {
		return nil, errors.New(rpcMessage(err))
	}
	return resp, nil
}

// waitInSync waits until every server in set reports volume vid in sync and
// not read-only with set as the replica set it knows, up to wait or until
// ctx ends. A server marks a volume behind as soon as it learns that its
// set gained a member, then waits for writes planned with the old set and
// catches up: in sync with the new set means every write it acknowledged
// is on every member of it.
func waitInSync(ctx context.Context, env *Env, vid uint32, set []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var behind []string
		for addr, ans := range serverStatuses(ctx, env, set) {
			why := "unreachable"
			if ans.err == nil {
				why = "does not hold it"
				for _, vi := range ans.status.Volumes {
					if vi.Id == vid {
						switch {
						case vi.ReadOnly:
							why = "read-only: " + vi.Error
						case !vi.InSync:
							why = "catching up"
						case !sameMembers(vi.Replicas, set):
							why = "has not learned the new replica set yet"
						default:
							why = ""
						}
					}
				}
			}
			if why != "" {
				behind = append(behind, addr+" "+why)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		slices.Sort(behind)
		if time.Now().After(deadline) {
			return fmt.Errorf("volume %d: replicas not in sync after %v (%s)", vid, wait, strings.Join(behind, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume %d: interrupted while waiting for replicas to be in sync (%s)", vid, strings.Join(behind, "; "))
		case <-tick.C:
		}
	}
}

// sameMembers reports whether a and b hold the same strings in any order.
func sameMembers(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x string) bool { return !slices.Contains(b, x) })
}

// printSteps prints a plan (or its outcome) as a numbered list.
func printSteps(w io.Writer, steps []StepJSON, applied bool) {
	if len(steps) == 0 {
		fmt.Fprintln(w, "nothing to do")
		return
	}
	if applied {
		fmt.Fprintln(w, "Steps:")
	} else {
		fmt.Fprintln(w, "Plan:")
	}
	for i, s := range steps {
		state := ""
		switch {
		case s.Error != "":
			state = "  FAILED: " + s.Error
		case s.Done:
			state = "  done"
		case applied:
			state = "  not run"
		}
		fmt.Fprintf(w, "  %d. %s (%s)%s\n", i+1, s.describe(), s.Why, state)
	}
}
