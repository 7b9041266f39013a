package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

// syncLoop runs catch-up passes for volumes marked out of sync, one pulse
// apart, until each succeeds against every replica.
func (s *Server) syncLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Pulse)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var ids []uint32
		for id := range s.mu.needSync {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		for _, id := range ids {
			if err := s.catchUp(ctx, id); err != nil {
				s.log.Debug("catch-up pass did not finish; will retry", "volume", id, "err", err)
				continue
			}
			s.log.Info("volume is in sync with its replicas", "volume", id)
			s.kickHeartbeat()
		}
	}
}

// catchUp makes this copy of volume vid and every other replica hold the
// union of their records (the later append time wins per key): it pulls what
// it lacks and pushes what a peer lacks. It needs every replica reachable.
// When it returns nil the volume is in sync: it ended the out-of-sync
// state itself, under the same lock that publishes replica sets.
func (s *Server) catchUp(ctx context.Context, vid uint32) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	v, ok := s.store.Get(vid)
	if !ok {
		return fmt.Errorf("volume %d is gone", vid)
	}
	loc := s.locate(ctx, vid)
	if loc == nil {
		return errors.New("no placement from the master yet")
	}
	if !slices.Contains(loc.Replicas, s.url) {
		// A copy made by CopyVolume waits here until the master lists it.
		return errors.New("this server is not in the volume's replica set (yet)")
	}
	if want := copiesFor(v.Info().Replication); len(loc.Replicas) < want {
		return fmt.Errorf("master lists %d of %d replicas", len(loc.Replicas), want)
	}
	// Writes planned with an older replica set may still be running; wait
	// for them, so that the pass below sees everything they stored.
	s.drainWrites(vid)
	for _, peer := range peersOf(loc, s.url) {
		if err := s.syncWith(ctx, v, vid, peer); err != nil {
			return fmt.Errorf("with %s: %w", peer, err)
		}
	}
	if loc.Primary != s.url {
		if err := s.primaryCounts(ctx, vid, loc.Primary); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A server that joined while the pass ran got nothing from it: the
	// volume stays behind and the next pass includes the new member.
	for _, r := range s.mu.locations[vid].GetReplicas() {
		if r != s.url && !slices.Contains(loc.Replicas, r) {
			return fmt.Errorf("replica %s joined while the pass ran; another pass follows", r)
		}
	}
	delete(s.mu.needSync, vid)
	delete(s.mu.lastNs, vid) // pulled records may carry later append times
	return nil
}

// primaryCounts returns nil when primary reports volume vid in sync with a
// replica set that holds this server. Only then does every write the
// primary acknowledged reach this copy: the writes before, because the
// primary's own catch-up pass after it learned the set pushed them here,
// and the writes after, because the primary sends them to every member of
// that set. A copy that pulled from every peer without this can still lack
// writes the primary acknowledged with the set it knew before this copy
// joined.
func (s *Server) primaryCounts(ctx context.Context, vid uint32, primary string) error {
	if primary == "" {
		return errors.New("the master names no primary yet")
	}
	conn, err := s.pool.Conn(primary)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	st, err := pb.NewVolumeClient(conn).VolumeServerStatus(ctx, &pb.VolumeServerStatusRequest{})
	if err != nil {
		return fmt.Errorf("asking primary %s whether it writes to this copy: %w", primary, fromStatus(err))
	}
	for _, vi := range st.Volumes {
		if vi.Id != vid {
			continue
		}
		switch {
		case !slices.Contains(vi.Replicas, s.url):
			return fmt.Errorf("primary %s has not learned that this server is a replica (it knows %v)", primary, vi.Replicas)
		case !vi.InSync:
			return fmt.Errorf("primary %s is still catching up with the replica set that holds this server", primary)
		}
		return nil
	}
	return fmt.Errorf("primary %s does not report volume %d", primary, vid)
}

func (s *Server) syncWith(ctx context.Context, v *Volume, vid uint32, peer string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	conn, err := s.pool.Conn(peer)
	if err != nil {
		return err
	}
	client := pb.NewVolumeClient(conn)
	stream, err := client.VolumeIndex(ctx, &pb.VolumeIndexRequest{VolumeId: vid})
	if err != nil {
		return fromStatus(err)
	}
	theirs := make(map[uint64]*pb.IndexEntry)
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fromStatus(err)
		}
		theirs[e.Key] = e
	}
	mine := v.Index()
	var pull, push []uint64
	seen := make(map[uint64]bool, len(mine))
	for _, e := range mine {
		seen[e.Key] = true
		t, ok := theirs[e.Key]
		switch {
		case !ok || t.AppendNs < e.AppendNs:
			push = append(push, e.Key)
		case t.AppendNs > e.AppendNs:
			pull = append(pull, e.Key)
		}
	}
	for k := range theirs {
		if !seen[k] {
			pull = append(pull, k)
		}
	}
	s.met.catchUpPending.Set(float64(len(pull) + len(push)))
	defer s.met.catchUpPending.Set(0)
	for _, k := range pull {
		s.met.catchUpPending.Dec()
		rec, err := s.readRecordFrom(ctx, peer, vid, k)
		if err != nil {
			return fmt.Errorf("pull key %x: %w", k, err)
		}
		if err := v.WriteRecord(ctx, rec); err != nil {
			return fmt.Errorf("store pulled key %x: %w", k, err)
		}
	}
	for _, k := range push {
		s.met.catchUpPending.Dec()
		rec, err := v.ReadRecord(k)
		if err != nil {
			return fmt.Errorf("read key %x to push: %w", k, err)
		}
		if err := s.replicateTo(ctx, peer, vid, rec); err != nil {
			return fmt.Errorf("push key %x: %w", k, err)
		}
	}
	if len(pull)+len(push) > 0 {
		s.met.catchUpRecords.Add(float64(len(pull) + len(push)))
		s.log.Info("caught up with replica", "volume", vid, "peer", peer, "pulled", len(pull), "pushed", len(push))
	}
	return nil
}
