package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/pb"
)

// ErrExists is wrapped when a volume to copy in is already on the server.
var ErrExists = errors.New("volume: already on this server")

// copyBatchBytes is how many record bytes ReadVolume puts in one message.
const copyBatchBytes = 1 << 20

// CopyIn builds volume id from records that next returns, batch by batch,
// until it returns io.EOF. Every record is decoded and its CRCs checked
// before it is written. The volume file is written under a temporary name
// (<base>.tmp), fsynced, renamed to <base>.dat and the directory fsynced;
// only then is it opened and added to the store. An error or a crash at any
// point leaves no volume: the temporary file is removed now or when the
// store next opens. It fails with ErrExists if the store holds volume id
// (or is copying it in already). It returns the records written and the
// size of the new file.
func (s *Store) CopyIn(ctx context.Context, id uint32, collection, replication string, next func() ([][]byte, error)) (v *Volume, records, size uint64, err error) {
	repl, err := normReplication(replication)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := ValidCollection(collection); err != nil {
		return nil, 0, 0, err
	}
	s.mu.Lock()
	switch {
	case s.mu.closed:
		s.mu.Unlock()
		return nil, 0, 0, fmt.Errorf("volume: copy in volume %d: store %w", id, ErrClosed)
	case s.mu.copying[id]:
		s.mu.Unlock()
		return nil, 0, 0, fmt.Errorf("volume: volume %d is being copied to this server already: %w", id, ErrExists)
	case s.mu.vols[id] != nil:
		s.mu.Unlock()
		return nil, 0, 0, fmt.Errorf("volume: volume %d: %w", id, ErrExists)
	}
	s.mu.copying[id] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.copying, id)
		s.mu.Unlock()
	}()

	sb := superblock{id: id, collection: collection, replication: repl}
	base := filepath.Join(s.dir, fileBase(collection, id))
	tmp, dat := base+extTemp, base+extData
	records, size, err = s.writeCopy(ctx, tmp, sb, next)
	if err == nil {
		err = s.fs.Rename(tmp, dat)
	}
	if err != nil {
		if rerr := s.fs.Remove(tmp); rerr == nil {
			s.fs.SyncDir(s.dir)
		}
		return nil, 0, 0, fmt.Errorf("volume: copy of volume %d abandoned, nothing kept: %w", id, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		// The rename may or may not survive a crash; the file is complete
		// either way, but this store can no longer vouch for it.
		s.fs.Remove(dat)
		return nil, 0, 0, fmt.Errorf("volume: copy of volume %d: sync directory %s: %w", id, s.dir, err)
	}
	v, err = openVolume(s.fs, s.dir, sb, false)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("volume: open copied volume %d: %w", id, err)
	}
	v.setCache(s.cache)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		v.Close()
		return nil, 0, 0, fmt.Errorf("volume: copy in volume %d: store %w", id, ErrClosed)
	}
	s.mu.vols[id] = v
	s.mu.Unlock()
	return v, records, size, nil
}

// writeCopy writes the superblock and the verified records to name and
// syncs it.
func (s *Store) writeCopy(ctx context.Context, name string, sb superblock, next func() ([][]byte, error)) (records, size uint64, err error) {
	f, err := s.fs.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	buf := sb.encode()
	off := int64(0)
	flush := func() error {
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
		off += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		batch, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		for _, rec := range batch {
			// Either format, copied as it is; verifyRecord also checks the
			// record is exactly as long as its header says.
			if _, err := verifyRecord(rec); err != nil {
				return 0, 0, fmt.Errorf("record %d from the source: %w", records+1, err)
			}
			buf = append(buf, rec...)
			records++
		}
		if len(buf) >= 4<<20 {
			if err := flush(); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	return records, uint64(off), nil
}

// ReadVolume streams the latest record of every key of a volume, each
// verified (ReadRecord), in batches of about copyBatchBytes. A corrupt
// record stops the stream with an error naming it: run volume.scrub to
// repair it from another replica first.
func (g *grpcService) ReadVolume(req *pb.ReadVolumeRequest, stream pb.Volume_ReadVolumeServer) error {
	v, err := g.volume(req.VolumeId)
	if err != nil {
		return err
	}
	var batch [][]byte
	n := 0
	for _, e := range v.Index() {
		if err := stream.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		rec, err := v.ReadRecord(e.Key)
		if err != nil {
			return toStatus(fmt.Errorf("volume: copy volume %d from %s: %w; run volume.scrub -volumeId %d to repair it from another replica", req.VolumeId, g.s.url, err, req.VolumeId))
		}
		batch = append(batch, rec)
		n += len(rec)
		if n >= copyBatchBytes {
			if err := stream.Send(&pb.RecordBatch{Records: batch}); err != nil {
				return err
			}
			batch, n = nil, 0
		}
	}
	if len(batch) > 0 {
		return stream.Send(&pb.RecordBatch{Records: batch})
	}
	return nil
}

// CopyVolume builds a replica of a volume from req.Source (see Store.CopyIn).
// The new copy is marked out of sync: it takes no part in writes and its
// catch-up pass waits until the master lists this server as a replica,
// then pulls whatever was written to the other replicas during the copy.
func (g *grpcService) CopyVolume(ctx context.Context, req *pb.CopyVolumeRequest) (*pb.CopyVolumeResponse, error) {
	s := g.s
	if req.Source == "" || req.Source == s.url {
		return nil, status.Errorf(codes.InvalidArgument, "copy volume %d: source %q must be another volume server", req.VolumeId, req.Source)
	}
	if _, ok := s.store.Get(req.VolumeId); ok {
		return nil, status.Errorf(codes.AlreadyExists, "volume %d is already on %s", req.VolumeId, s.url)
	}
	conn, err := s.pool.Conn(req.Source)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "copy volume %d: cannot reach source %s: %v", req.VolumeId, req.Source, err)
	}
	start := time.Now()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := pb.NewVolumeClient(conn).ReadVolume(cctx, &pb.ReadVolumeRequest{VolumeId: req.VolumeId})
	if err != nil {
		return nil, toStatus(fromStatus(err))
	}
	next := func() ([][]byte, error) {
		b, err := rs.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("reading from %s: %w", req.Source, fromStatus(err))
		}
		return b.Records, nil
	}
	// Mark it behind before it is visible in the store, so no heartbeat
	// ever reports this copy in sync before its catch-up pass.
	s.mu.Lock()
	s.mu.needSync[req.VolumeId] = "copied from " + req.Source
	s.mu.Unlock()
	_, records, size, err := s.store.CopyIn(ctx, req.VolumeId, req.Collection, req.Replication, next)
	if err != nil {
		if !errors.Is(err, ErrExists) {
			s.mu.Lock()
			delete(s.mu.needSync, req.VolumeId)
			s.mu.Unlock()
		}
		s.log.Warn("copying a volume from a replica failed; nothing was kept", "volume", req.VolumeId, "source", req.Source, "err", err)
		if errors.Is(err, ErrExists) {
			return nil, status.Error(codes.AlreadyExists, err.Error())
		}
		return nil, toStatus(err)
	}
	s.log.Info("copied volume from a replica; it catches up with the replicas once the master lists this server as one",
		"volume", req.VolumeId, "source", req.Source, "records", records, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	s.kickHeartbeat()
	return &pb.CopyVolumeResponse{Records: records, Bytes: size}, nil
}
