package volume

import (
	"context"
	"slices"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

// heartbeatLoop reports this server and its volumes to the master leader
// every pulse (and at once when kicked), following leader hints and trying
// every configured master in turn when one does not answer.
func (s *Server) heartbeatLoop(ctx context.Context) {
	target := s.cfg.Masters[0]
	next := 1
	t := time.NewTicker(s.cfg.Pulse)
	defer t.Stop()
	for {
		hint, err := s.heartbeat(ctx, target)
		switch {
		case err != nil || hint == "":
			target = s.cfg.Masters[next%len(s.cfg.Masters)]
			next++
		case hint != target:
			target = hint // follow the leader and report at once
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// heartbeat sends one heartbeat to master and returns the leader it names.
func (s *Server) heartbeat(ctx context.Context, master string) (string, error) {
	conn, err := s.pool.Conn(master)
	if err != nil {
		return "", err
	}
	free, _ := s.store.FreeBytes()
	req := &pb.HeartbeatRequest{
		Url: s.url, PublicUrl: s.cfg.PublicURL, GrpcPort: uint32(s.cfg.Port + 10000),
		Dc: s.cfg.DC, Rack: s.cfg.Rack, MaxVolumes: uint32(s.cfg.MaxVolumes),
		FreeBytes: free, Volumes: s.volumeInfos(),
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.Pulse+time.Second)
	defer cancel()
	resp, err := pb.NewMasterClient(conn).Heartbeat(ctx, req)
	if err != nil {
		s.setLeader("", err)
		return "", err
	}
	if !resp.IsLeader {
		return resp.Leader, nil
	}
	locs := make(map[uint32]*pb.VolumeLocation, len(resp.Volumes))
	for _, l := range resp.Volumes {
		locs[l.VolumeId] = l
	}
	// Marked behind in the same critical section that publishes the new
	// set: no status reports the new set in sync before the catch-up pass
	// that follows, and no pass or write reads "not behind" with the old
	// set after the join was noticed (see noticeJoinsLocked).
	s.mu.Lock()
	joined := s.noticeJoinsLocked(s.mu.locations, locs)
	s.mu.locations = locs
	s.mu.sizeLimit = resp.VolumeSizeLimit
	s.mu.Unlock()
	for id, r := range joined {
		s.log.Warn("a server joined the volume's replica set; the volume is read-only here until a catch-up pass has pushed the new replica what it lacks",
			"volume", id, "replica", r)
	}
	if len(joined) > 0 {
		s.kickHeartbeat()
	}
	s.setLeader(master, nil)
	return master, nil
}

func (s *Server) setLeader(leader string, err error) {
	s.mu.Lock()
	old := s.mu.leader
	s.mu.leader = leader
	s.mu.Unlock()
	if old == leader {
		return
	}
	if leader == "" {
		s.log.Warn("lost the master leader; volumes keep serving reads, new placements wait for a leader", "was", old, "err", err)
		return
	}
	s.log.Info("registered with master leader", "master", leader)
}

// noticeJoinsLocked marks behind every volume held here whose replica set
// gained a server since the previous heartbeat, and returns them with the
// server that joined: the new replica was copied while writes went on, and
// this copy's catch-up pass (which first waits for writes planned with the
// old set) pushes it whatever it missed. Until then this copy refuses
// writes, so none is acknowledged without the new replica.
//
// The caller holds s.mu and publishes cur in the same critical section.
// Marking in one and publishing in a later one would let a catch-up pass
// start in between: it would read the old set, sync with the old members
// only and end the out-of-sync state, and the new set would then show as
// in sync although nothing was pushed to the new member.
func (s *Server) noticeJoinsLocked(old, cur map[uint32]*pb.VolumeLocation) map[uint32]string {
	joined := map[uint32]string{}
	for id, l := range cur {
		prev, ok := old[id]
		if !ok {
			continue
		}
		for _, r := range l.Replicas {
			if r != s.url && !slices.Contains(prev.Replicas, r) {
				if _, held := s.store.Get(id); held {
					s.mu.needSync[id] = "replica " + r + " joined the replica set"
					joined[id] = r
				}
				break
			}
		}
	}
	return joined
}
