package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
)

// errNotWritable means this server may not accept writes for a volume now
// (placement unknown, replicas missing, or catching up); the client should
// retry or ask the master for another volume.
var errNotWritable = errors.New("volume: not writable now")

// replicaTimeout bounds one replication call to a peer.
const replicaTimeout = 30 * time.Second

// copiesFor returns how many replicas a placement string xyz asks for.
func copiesFor(replication string) int {
	n := 1
	for _, c := range replication {
		if c >= '0' && c <= '9' {
			n += int(c - '0')
		}
	}
	return n
}

// replicatedWrite is the primary's write path: it gives n its append time,
// writes it locally and to every other replica in parallel, and returns nil
// only when every replica has it on stable storage. Any replica failure
// marks the volume out of sync (read-only at the master) and fails the write.
func (s *Server) replicatedWrite(ctx context.Context, v *Volume, n *Needle) error {
	in := v.Info()
	// Held until every replica answered, so that a catch-up pass after a
	// replica-set change can wait for writes planned with the old set.
	g := s.gate(in.ID)
	g.RLock()
	defer g.RUnlock()
	// The replica set is read with the out-of-sync mark, under the gate,
	// never earlier: a set looked up before the gate may be one a join has
	// replaced since, with the catch-up pass that followed the join already
	// over, and a write to it would be acknowledged without the new member.
	s.mu.Lock()
	why, behind := s.mu.needSync[in.ID]
	loc := s.mu.locations[in.ID]
	s.mu.Unlock()
	if loc == nil {
		return fmt.Errorf("%w: volume %d has no placement from the master yet; retry in a few seconds", errNotWritable, in.ID)
	}
	if behind {
		return fmt.Errorf("%w: volume %d is catching up with its replicas (%s); ask the master for another file id", errNotWritable, in.ID, why)
	}
	if want := copiesFor(in.Replication); len(loc.Replicas) < want {
		return fmt.Errorf("%w: volume %d has %d of %d replicas; ask the master for another file id", errNotWritable, in.ID, len(loc.Replicas), want)
	}
	n.AppendNs = s.nextAppendNs(v)
	rec := EncodeRecord(n)

	// The client going away must not leave replicas half-written: finish the
	// fan-out on a context of our own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replicaTimeout)
	defer cancel()
	peers := peersOf(loc, s.url)
	type result struct {
		peer string
		err  error
	}
	results := make(chan result, len(peers)+1) // buffered: an early return leaks nothing
	go func() { results <- result{"", v.writeEncoded(ctx, rec)} }()
	for _, p := range peers {
		go func() {
			began := time.Now()
			err := s.replicateTo(ctx, p, in.ID, rec)
			if err == nil {
				s.met.replicateLatency.Observe(time.Since(began).Seconds())
			}
			results <- result{p, err}
		}()
	}
	var localErr error
	var peerErrs []string
	var noSpace, gone bool
	for range len(peers) + 1 {
		r := <-results
		switch {
		case r.err == nil:
		case r.peer == "":
			localErr = r.err
		default:
			peerErrs = append(peerErrs, fmt.Sprintf("%s: %v", r.peer, r.err))
			noSpace = noSpace || errors.Is(r.err, ErrNoSpace)
			gone = gone || errors.Is(r.err, ErrNotFound)
		}
	}
	if localErr == nil && len(peerErrs) == 0 {
		s.met.replicatedWrites.Add(float64(len(peers)))
		return nil
	}
	if len(peers) > 0 {
		s.markBehind(in.ID, "a replicated write failed")
	}
	if localErr != nil {
		return localErr
	}
	err := fmt.Errorf("volume: needle %s not stored on every replica (%s); the volume is read-only until its replicas agree, ask the master for another file id",
		fid.FileID{Volume: in.ID, Key: n.Key, Cookie: n.Cookie}, strings.Join(peerErrs, "; "))
	if noSpace {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	if gone {
		// A replica left the set (evacuate, balance) before this server
		// heard of it: the write is refused, not failed.
		return fmt.Errorf("%w: %w", errNotWritable, err)
	}
	return err
}

func (s *Server) replicateTo(ctx context.Context, peer string, vid uint32, rec []byte) error {
	conn, err := s.pool.Conn(peer)
	if err != nil {
		return err
	}
	_, err = pb.NewVolumeClient(conn).Replicate(ctx, &pb.ReplicateRequest{VolumeId: vid, Record: rec})
	return fromStatus(err)
}

// fromStatus maps a peer's gRPC error back to this package's sentinels.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		return fmt.Errorf("%w: %s", ErrNoSpace, st.Message())
	case codes.NotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, st.Message())
	case codes.DataLoss:
		return fmt.Errorf("%w: %s", ErrCorrupt, st.Message())
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrReadOnly, st.Message())
	}
	return fmt.Errorf("%s", st.Message())
}

// toStatus maps a store error to a gRPC status for peers.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrDeleted):
		code = codes.NotFound
	case errors.Is(err, ErrCorrupt):
		code = codes.DataLoss
	case errors.Is(err, ErrReadOnly):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrTooLarge):
		code = codes.InvalidArgument
	}
	return status.Error(code, err.Error())
}

// read returns needle id, repairing a corrupt local copy from a replica and,
// while the volume is catching up, looking at the replicas for what this
// copy may have missed.
func (s *Server) read(ctx context.Context, v *Volume, id fid.FileID) (*Needle, error) {
	n, err := v.Read(id.Key, id.Cookie)
	_, behind := s.behind(id.Volume)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, ErrCorrupt):
		return s.repair(ctx, v, id, err)
	case behind && errors.Is(err, ErrNotFound):
		rec, perr := s.fetchFromPeers(ctx, id.Volume, id.Key)
		if perr != nil {
			return nil, err
		}
		pn, derr := DecodeRecord(rec)
		if derr != nil || pn.Deleted || pn.Cookie != id.Cookie {
			return nil, err
		}
		return pn, nil
	default:
		return nil, err
	}
}

// readRange returns bytes [off, off+n) of needle id (fewer at its end),
// reading only the blocks they cover. A damaged block, or a needle this
// copy lacks while it catches up, is served as read does (repair from a
// replica, or a replica's copy) from the whole needle.
// release, never nil, is ReadRangeBuf's: the caller calls it once done
// with the bytes.
func (s *Server) readRange(ctx context.Context, v *Volume, id fid.FileID, off, n int64) (Range, func(), error) {
	rg, release, err := v.ReadRangeBuf(id.Key, id.Cookie, off, n)
	_, behind := s.behind(id.Volume)
	if err == nil || !(errors.Is(err, ErrCorrupt) || behind && errors.Is(err, ErrNotFound)) {
		return rg, release, err
	}
	nd, err := s.read(ctx, v, id)
	if err != nil {
		return Range{}, release, err
	}
	return rangeOf(nd, off, n), release, nil
}

// repair replaces a corrupt local needle with a verified copy from another
// replica and returns that copy.
func (s *Server) repair(ctx context.Context, v *Volume, id fid.FileID, cause error) (*Needle, error) {
	s.met.corruptReads.Inc()
	rec, err := s.fetchFromPeers(ctx, id.Volume, id.Key)
	if err != nil {
		s.log.Error("needle is corrupt and no replica has a good copy; the data of this file id is lost unless a backup has it",
			"fid", id.String(), "cause", cause, "peers", err)
		return nil, fmt.Errorf("%w: needle %s is corrupt on this server and no replica has a good copy", ErrCorrupt, id)
	}
	good, err := DecodeRecord(rec)
	if err != nil {
		return nil, err
	}
	if werr := v.WriteRecord(ctx, rec); werr != nil {
		s.log.Error("could not repair corrupt needle from replica; serving the replica's copy", "fid", id.String(), "err", werr)
	} else {
		s.met.repairs.Inc()
		s.log.Warn("repaired corrupt needle from a replica", "fid", id.String())
	}
	if good.Deleted {
		return nil, fmt.Errorf("%w: needle %s", ErrDeleted, id)
	}
	if good.Cookie != id.Cookie {
		return nil, fmt.Errorf("%w: needle %s", ErrCookieMismatch, id)
	}
	return good, nil
}

// fetchFromPeers returns the first verified record of key from another replica.
func (s *Server) fetchFromPeers(ctx context.Context, vid uint32, key uint64) ([]byte, error) {
	loc := s.locate(ctx, vid)
	peers := peersOf(loc, s.url)
	if len(peers) == 0 {
		return nil, errors.New("no other replica known")
	}
	var errs []string
	for _, p := range peers {
		rec, err := s.readRecordFrom(ctx, p, vid, key)
		if err == nil {
			if _, derr := verifyRecord(rec); derr == nil {
				return rec, nil
			} else {
				err = derr
			}
		}
		errs = append(errs, fmt.Sprintf("%s: %v", p, err))
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func (s *Server) readRecordFrom(ctx context.Context, peer string, vid uint32, key uint64) ([]byte, error) {
	conn, err := s.pool.Conn(peer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	resp, err := pb.NewVolumeClient(conn).ReadRecord(ctx, &pb.ReadRecordRequest{VolumeId: vid, Key: key})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp.Record, nil
}
