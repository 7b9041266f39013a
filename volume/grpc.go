package volume

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
)

// grpcService implements pb.VolumeServer for peers and the master.
type grpcService struct {
	pb.UnimplementedVolumeServer
	s *Server
}

func (g *grpcService) volume(id uint32) (*Volume, error) {
	v, ok := g.s.store.Get(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %d is not on server %s", id, g.s.url)
	}
	return v, nil
}

func (g *grpcService) AllocateVolume(_ context.Context, req *pb.AllocateVolumeRequest) (*pb.AllocateVolumeResponse, error) {
	if _, err := g.s.store.Allocate(req.VolumeId, req.Collection, req.Replication); err != nil {
		return nil, toStatus(err)
	}
	g.s.log.Info("allocated volume", "volume", req.VolumeId, "collection", req.Collection, "replication", req.Replication)
	g.s.kickHeartbeat()
	return &pb.AllocateVolumeResponse{}, nil
}

func (g *grpcService) DeleteVolume(_ context.Context, req *pb.DeleteVolumeRequest) (*pb.DeleteVolumeResponse, error) {
	if _, ok := g.s.store.Get(req.VolumeId); !ok {
		return &pb.DeleteVolumeResponse{}, nil
	}
	if err := g.s.store.Delete(req.VolumeId); err != nil {
		return nil, toStatus(err)
	}
	g.s.mu.Lock()
	delete(g.s.mu.needSync, req.VolumeId)
	delete(g.s.mu.lastNs, req.VolumeId)
	g.s.mu.Unlock()
	g.s.log.Info("deleted volume", "volume", req.VolumeId)
	g.s.kickHeartbeat()
	return &pb.DeleteVolumeResponse{}, nil
}

func (g *grpcService) Replicate(ctx context.Context, req *pb.ReplicateRequest) (*pb.ReplicateResponse, error) {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return nil, err
	}
	if err := v.WriteRecord(ctx, req.Record); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReplicateResponse{}, nil
}

func (g *grpcService) VolumeIndex(req *pb.VolumeIndexRequest, stream pb.Volume_VolumeIndexServer) error {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return err
	}
	for _, e := range v.Index() {
		if err := stream.Send(&pb.IndexEntry{Key: e.Key, Cookie: e.Cookie, Size: e.Size, AppendNs: e.AppendNs, Crc: e.CRC, Deleted: e.Deleted}); err != nil {
			return err
		}
	}
	return nil
}

func (g *grpcService) ReadRecord(_ context.Context, req *pb.ReadRecordRequest) (*pb.ReadRecordResponse, error) {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return nil, err
	}
	rec, err := v.ReadRecord(req.Key)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReadRecordResponse{Record: rec}, nil
}

func (g *grpcService) Vacuum(ctx context.Context, req *pb.VacuumRequest) (*pb.VacuumResponse, error) {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return nil, err
	}
	in := v.Info()
	if req.GarbageThreshold > 0 && in.Size > 0 && float64(in.DeletedBytes)/float64(in.Size) < req.GarbageThreshold {
		return &pb.VacuumResponse{BytesBefore: in.Size, BytesAfter: in.Size}, nil
	}
	before, after, err := v.Vacuum(ctx)
	if err != nil {
		return nil, toStatus(fmt.Errorf("volume: vacuum volume %d: %w", req.VolumeId, err))
	}
	g.s.log.Info("vacuumed volume", "volume", req.VolumeId, "before", before, "after", after)
	return &pb.VacuumResponse{Compacted: true, BytesBefore: before, BytesAfter: after}, nil
}

func (g *grpcService) VolumeServerStatus(context.Context, *pb.VolumeServerStatusRequest) (*pb.VolumeServerStatusResponse, error) {
	free, _ := g.s.store.FreeBytes()
	return &pb.VolumeServerStatusResponse{Volumes: g.s.volumeInfos(), FreeBytes: free}, nil
}
