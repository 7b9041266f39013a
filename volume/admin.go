package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-storage/cairn/internal/pb"
)

// Scrub verifies the CRC of every live needle of a volume on this server
// (Volume.Verify) and, with req.Repair, replaces each corrupt needle with a
// verified copy fetched from another replica, through the same path a read
// of a corrupt needle takes (fetchFromPeers, then WriteRecord, which appends
// the copy so that it wins over the corrupt record). A needle is counted as
// repaired only once it reads back verified. Needles that no replica has a
// good copy of are listed in the response's errors; they keep reading as
// corrupt. Scrub may run concurrently with reads and writes; cancelling ctx
// stops it between needles and leaves every needle either as it was or
// repaired.
func (g *grpcService) Scrub(ctx context.Context, req *pb.ScrubRequest) (*pb.ScrubResponse, error) {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return nil, err
	}
	resp := &pb.ScrubResponse{}
	for _, e := range v.Index() {
		if !e.Deleted {
			resp.Checked++
		}
	}
	corrupt, err := v.Verify(ctx)
	resp.Corrupt = uint64(len(corrupt))
	if err != nil {
		return nil, toStatus(fmt.Errorf("volume: scrub volume %d on %s after %d corrupt needles: %w", req.VolumeId, g.s.url, len(corrupt), err))
	}
	if len(corrupt) > 0 {
		g.s.met.corruptReads.Add(float64(len(corrupt)))
		g.s.log.Error("scrub found corrupt needles", "volume", req.VolumeId, "corrupt", len(corrupt), "repair", req.Repair)
	}
	if !req.Repair {
		return resp, nil
	}
	for _, key := range corrupt {
		if err := ctx.Err(); err != nil {
			return nil, toStatus(fmt.Errorf("volume: scrub volume %d on %s interrupted after repairing %d of %d corrupt needles: %w",
				req.VolumeId, g.s.url, resp.Repaired, len(corrupt), err))
		}
		if err := g.s.repairKey(ctx, v, req.VolumeId, key); err != nil {
			resp.Errors = append(resp.Errors, err.Error())
			continue
		}
		resp.Repaired++
	}
	return resp, nil
}

// repairKey replaces the corrupt record of key in v with a verified copy
// from another replica and checks that it now reads back verified.
func (s *Server) repairKey(ctx context.Context, v *Volume, vid uint32, key uint64) error {
	rec, err := s.fetchFromPeers(ctx, vid, key)
	if err != nil {
		s.log.Error("corrupt needle found by scrub has no good copy on any replica; its data is lost unless a backup has it",
			"volume", vid, "key", key, "peers", err)
		return fmt.Errorf("volume: needle %d of volume %d on %s is corrupt and no replica has a good copy (%v); restore it from a backup or delete the file that uses it",
			key, vid, s.url, err)
	}
	if err := v.WriteRecord(ctx, rec); err != nil {
		return fmt.Errorf("volume: repair needle %d of volume %d on %s: %w", key, vid, s.url, err)
	}
	if _, err := v.ReadRecord(key); err != nil {
		if errors.Is(err, ErrCorrupt) {
			// The copy is older than the corrupt record, so it does not win.
			return fmt.Errorf("volume: needle %d of volume %d on %s is still corrupt after copying it from a replica (the replicas hold an older version); restore it from a backup: %w",
				key, vid, s.url, err)
		}
		return fmt.Errorf("volume: needle %d of volume %d on %s after repair: %w", key, vid, s.url, err)
	}
	s.met.repairs.Inc()
	s.log.Warn("scrub repaired corrupt needle from a replica", "volume", vid, "key", key)
	return nil
}
