package filer

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/cairn-storage/cairn/internal/pb"
)

// masterRing remembers which master answered last, so calls start there.
type masterRing struct {
	mu   sync.Mutex // guards next
	next int
}

// callMaster runs fn against each master in turn until one succeeds.
func (s *Server) callMaster(ctx context.Context, fn func(pb.MasterClient) error) error {
	n := len(s.cfg.Masters)
	s.ring.mu.Lock()
	start := s.ring.next
	s.ring.mu.Unlock()
	var errs []string
	for i := range n {
		idx := (start + i) % n
		addr := s.cfg.Masters[idx]
		conn, err := s.pool.Conn(addr)
		if err == nil {
			err = fn(pb.NewMasterClient(conn))
		}
		if err == nil {
			s.ring.mu.Lock()
			s.ring.next = idx
			s.ring.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
	}
	return fmt.Errorf("filer: no master answered: %s", strings.Join(errs, "; "))
}

func (s *Server) assign(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error) {
	if req.Collection == "" {
		req.Collection = s.cfg.Collection
	}
	if req.Replication == "" {
		req.Replication = s.cfg.Replication
	}
	var resp *pb.AssignResponse
	err := s.callMaster(ctx, func(c pb.MasterClient) (err error) {
		resp, err = c.Assign(ctx, req)
		return err
	})
	return resp, err
}

func (s *Server) lookupVolume(ctx context.Context, vid uint32) (*pb.LookupResponse, error) {
	var resp *pb.LookupResponse
	err := s.callMaster(ctx, func(c pb.MasterClient) (err error) {
		resp, err = c.Lookup(ctx, &pb.LookupRequest{VolumeId: vid})
		return err
	})
	return resp, err
}
