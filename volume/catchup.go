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
			s.mu.Lock()
			delete(s.mu.needSync, id)
			delete(s.mu.lastNs, id) // pulled records may carry later append times
			s.mu.Unlock()
			s.log.Info("volume is in sync with its replicas", "volume", id)
			s.kickHeartbeat()
		}
	}
}

// catchUp makes this copy of volume vid and every other replica hold the
// union of their records (the later append time wins per key): it pulls what
// it lacks and pushes what a peer lacks. It needs every replica reachable.
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
	return nil
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
