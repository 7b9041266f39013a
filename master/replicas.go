package master

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

// updateReplicas changes the replica set of a volume in one Raft command
// (set_replicas). Only the leader calls it. The rules keep every change
// safe to apply and to retry:
//
//   - An added server must be alive and hold a copy of the volume with the
//     same collection and replication (it was built by CopyVolume); the
//     master asks that server directly rather than trusting a heartbeat.
//     The new copy is out of sync until its catch-up pass has run against
//     every replica, so the volume stays read-only until then.
//   - A removed server that is alive still holds a good copy, so removing it
//     must not leave the volume depending on copies that may lack writes:
//     every remaining replica must be alive, in sync and not read-only.
//     A removed server that is dead (silent longer than the dead timeout)
//     is forgotten; at least one remaining replica must be alive.
//   - When the primary leaves, the first remaining alive in-sync replica
//     becomes primary (else the first alive one).
//   - expect, when given, must be the current set (any order): a plan made
//     from an older state is refused rather than applied to a newer one.
func (m *Master) updateReplicas(ctx context.Context, req *pb.UpdateReplicasRequest) (*pb.UpdateReplicasResponse, error) {
	id := req.GetVolumeId()
	if len(req.GetAdd())+len(req.GetRemove()) == 0 {
		return nil, apiErrorf(http.StatusBadRequest, "volume %d: nothing to add or remove", id)
	}
	for _, a := range append(slices.Clone(req.GetAdd()), req.GetRemove()...) {
		if err := validAddr("server", a); err != nil {
			return nil, apiErrorf(http.StatusBadRequest, "volume %d: %v", id, err)
		}
	}
	for _, a := range req.GetAdd() {
		if slices.Contains(req.GetRemove(), a) {
			return nil, apiErrorf(http.StatusBadRequest, "volume %d: %s is both added and removed", id, a)
		}
	}
	var vol VolumeRecord
	var found bool
	known, draining := map[string]bool{}, map[string]bool{}
	m.fsm.view(func(s *state) {
		if v, ok := s.Volumes[id]; ok {
			vol, found = *v, true
			vol.Replicas = slices.Clone(v.Replicas)
		}
		for u, srv := range s.Servers {
			known[u], draining[u] = true, srv.Draining
		}
	})
	if !found {
		return nil, apiErrorf(http.StatusNotFound, "volume %d not found", id)
	}
	if len(req.GetExpect()) > 0 && !sameSet(vol.Replicas, req.GetExpect()) {
		return nil, apiErrorf(http.StatusConflict, "volume %d: its replicas are %v, not %v as planned; the volume changed meanwhile, plan again", id, vol.Replicas, req.GetExpect())
	}
	view := m.live.snapshot(time.Now())
	next := slices.Clone(vol.Replicas)
	for _, a := range req.GetAdd() {
		if slices.Contains(next, a) {
			continue
		}
		if !known[a] || !view.alive(a) {
			return nil, apiErrorf(http.StatusConflict, "volume %d: server %s to add is not a live registered volume server", id, a)
		}
		if draining[a] {
			return nil, apiErrorf(http.StatusConflict, "volume %d: server %s is being evacuated; choose another server", id, a)
		}
		if err := m.checkHolds(ctx, a, vol); err != nil {
			return nil, err
		}
		next = append(next, a)
	}
	removedLive := false
	for _, r := range req.GetRemove() {
		if !slices.Contains(next, r) {
			continue
		}
		if view.alive(r) {
			removedLive = true
		}
		next = slices.DeleteFunc(next, func(x string) bool { return x == r })
	}
	if len(next) == 0 {
		return nil, apiErrorf(http.StatusConflict, "volume %d: removing %v would leave it without replicas", id, req.GetRemove())
	}
	if slices.Equal(next, vol.Replicas) {
		return &pb.UpdateReplicasResponse{Replicas: next, Primary: vol.Primary}, nil
	}
	inSync := func(u string) bool {
		if !view.alive(u) {
			return false
		}
		vi, ok := view.servers[u].volumes[id]
		if !ok || !vi.GetInSync() || vi.GetReadOnly() {
			return false
		}
		// In sync since it learned the current set (it may not have yet).
		for _, r := range vol.Replicas {
			if !slices.Contains(vi.GetReplicas(), r) {
				return false
			}
		}
		return true
	}
	var remaining []string // replicas kept from the old set
	for _, r := range next {
		if slices.Contains(vol.Replicas, r) {
			remaining = append(remaining, r)
		}
	}
	if removedLive {
		for _, r := range next {
			if !inSync(r) {
				return nil, apiErrorf(http.StatusConflict, "volume %d: not removing a live replica while replica %s is not alive and in sync; wait until volume.list shows it in sync, then retry", id, r)
			}
		}
	}
	if !slices.ContainsFunc(remaining, view.alive) {
		return nil, apiErrorf(http.StatusConflict, "volume %d: none of the replicas it keeps (%v) is alive; its data would exist only on the new copies", id, remaining)
	}
	primary := vol.Primary
	if !slices.Contains(next, primary) {
		primary = ""
		for _, pick := range []func(string) bool{inSync, view.alive} {
			if i := slices.IndexFunc(remaining, pick); i >= 0 && primary == "" {
				primary = remaining[i]
			}
		}
	}
	if _, err := m.apply(ctx, setReplicasCmd(id, next, primary, vol.Replicas)); err != nil {
		return nil, err
	}
	m.log.Info("changed the replica set of volume", "volume", id, "from", vol.Replicas, "to", next, "primary", primary)
	return &pb.UpdateReplicasResponse{Replicas: next, Primary: primary}, nil
}

// checkHolds asks server whether it holds a copy of vol with the volume's
// collection and replication.
func (m *Master) checkHolds(ctx context.Context, server string, vol VolumeRecord) error {
	conn, err := m.pool.Conn(server)
	if err != nil {
		return apiErrorf(http.StatusServiceUnavailable, "volume %d: cannot reach %s: %v", vol.ID, server, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := pb.NewVolumeClient(conn).VolumeServerStatus(cctx, &pb.VolumeServerStatusRequest{})
	if err != nil {
		return apiErrorf(http.StatusServiceUnavailable, "volume %d: asking %s for its volumes: %s", vol.ID, server, errorMessage(err))
	}
	for _, vi := range st.GetVolumes() {
		if vi.GetId() != vol.ID {
			continue
		}
		if vi.GetCollection() != vol.Collection || vi.GetReplication() != vol.Replication {
			return apiErrorf(http.StatusConflict, "volume %d: %s holds it as collection %q replication %s, the master knows collection %q replication %s",
				vol.ID, server, vi.GetCollection(), vi.GetReplication(), vol.Collection, vol.Replication)
		}
		return nil
	}
	return apiErrorf(http.StatusConflict, "volume %d: %s does not hold a copy; copy it there first (CopyVolume)", vol.ID, server)
}

// setDraining marks a registered volume server as draining or not.
func (m *Master) setDraining(ctx context.Context, url string, draining bool) error {
	if err := validAddr("server", url); err != nil {
		return apiErrorf(http.StatusBadRequest, "%v", err)
	}
	var known ServerRecord
	var ok bool
	m.fsm.view(func(s *state) { known, ok = s.Servers[url] })
	if !ok {
		return apiErrorf(http.StatusNotFound, "volume server %s is not registered", url)
	}
	if known.Draining == draining {
		return nil
	}
	if _, err := m.apply(ctx, setDrainingCmd(url, draining)); err != nil {
		return err
	}
	if draining {
		m.log.Info("volume server is draining: no new volumes or replicas go there", "server", url)
	} else {
		m.log.Info("volume server is no longer draining", "server", url)
	}
	return nil
}
