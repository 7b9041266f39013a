package master

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/raftutil"
)

// maxAssignCount bounds count in one assign.
const maxAssignCount = 1 << 16

// assign picks a writable volume (growing one when none exists) and reserves
// count file keys in it. Only the leader calls it.
func (m *Master) assign(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error) {
	start := time.Now()
	defer func() { m.metrics.assignLatency.Observe(time.Since(start).Seconds()) }()

	count := uint64(max(req.GetCount(), 1))
	if count > maxAssignCount {
		return nil, apiErrorf(http.StatusBadRequest, "count=%d is too large; ask for at most %d file ids at once", count, maxAssignCount)
	}
	repl := req.GetReplication()
	if repl == "" {
		repl = m.cfg.DefaultReplication
	}
	p, err := parsePlacement(repl)
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, "%v", err)
	}
	coll := req.GetCollection()
	if err := validCollection(coll); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, "%v", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, apiErrorf(http.StatusServiceUnavailable, "gave up assigning: %v; retry", err)
		}
		term, since, ok := m.leaderEpoch()
		if !ok {
			return nil, apiErrorf(http.StatusServiceUnavailable, "this master lost leadership while assigning; retry")
		}
		if vols := m.writableVolumes(coll, p.String()); len(vols) > 0 {
			return m.assignFrom(ctx, term, vols[rand.IntN(len(vols))], count)
		}
		if m.growGrace(since) {
			return nil, apiErrorf(http.StatusServiceUnavailable,
				"no writable volume for collection %q replication %s yet: this master became leader %v ago and waits for volume servers to report in; retry",
				coll, p, time.Since(since).Round(time.Millisecond))
		}
		if err := m.growOne(ctx, coll, p); err != nil {
			return nil, err
		}
	}
}

// assignFrom reserves count keys and builds the answer for volume v.
func (m *Master) assignFrom(ctx context.Context, term uint64, v *VolumeRecord, count uint64) (*pb.AssignResponse, error) {
	key, err := m.nextKeys(ctx, term, count)
	if err != nil {
		return nil, err
	}
	cookie := rand.Uint32()
	for cookie == 0 {
		cookie = rand.Uint32()
	}
	public := v.Primary
	m.fsm.view(func(s *state) {
		if srv, ok := s.Servers[v.Primary]; ok && srv.PublicURL != "" {
			public = srv.PublicURL
		}
	})
	id := fid.FileID{Volume: v.ID, Key: key, Cookie: cookie}
	auth, err := m.cfg.Tokens.SignWrite(id, uint32(count))
	if err != nil {
		return nil, err
	}
	return &pb.AssignResponse{
		Fid:       id.String(),
		Url:       v.Primary,
		PublicUrl: public,
		Count:     uint32(count),
		Replicas:  slices.Clone(v.Replicas),
		Auth:      auth,
	}, nil
}

// nextKeys hands out n consecutive file keys from the leader's leased block,
// leasing a fresh block through Raft when the block is short or was leased in
// an earlier leadership term. Blocks are leased exclusively through the log,
// so no key is ever handed out twice, whoever leads.
func (m *Master) nextKeys(ctx context.Context, term, n uint64) (uint64, error) {
	m.keys.mu.Lock()
	defer m.keys.mu.Unlock()
	if m.keys.term != term || m.keys.end-m.keys.next < n {
		res, err := m.apply(ctx, leaseKeysCmd(max(keyBlock, n)))
		if err != nil {
			return 0, err
		}
		kr := res.(KeyRange)
		m.keys.term, m.keys.next, m.keys.end = term, kr.Start, kr.End
	}
	k := m.keys.next
	m.keys.next += n
	return k, nil
}

// apply replicates cmd, mapping leadership errors to API errors.
func (m *Master) apply(ctx context.Context, cmd []byte) (any, error) {
	node := m.node.Load()
	if node == nil {
		return nil, apiErrorf(http.StatusServiceUnavailable, "master is shutting down; retry on another master")
	}
	res, err := node.Apply(ctx, cmd)
	switch {
	case errors.Is(err, raftutil.ErrNotLeader):
		return nil, apiErrorf(http.StatusServiceUnavailable, "this master lost leadership; retry")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, apiErrorf(http.StatusServiceUnavailable, "replicating a change through the masters timed out (is a quorum of masters up?); retry")
	case err != nil:
		return nil, fmt.Errorf("master: %w", err)
	}
	return res, nil
}

// writableVolumes returns copies of the writable volumes of a collection and
// replication.
func (m *Master) writableVolumes(coll, repl string) []*VolumeRecord {
	view := m.live.snapshot(time.Now())
	var out []*VolumeRecord
	m.fsm.view(func(s *state) {
		for _, v := range s.Volumes {
			if v.Collection != coll || v.Replication != repl {
				continue
			}
			if ok, _, _, _ := view.volumeHealth(v, m.cfg.VolumeSizeLimit); ok {
				vc := *v
				vc.Replicas = slices.Clone(v.Replicas)
				out = append(out, &vc)
			}
		}
	})
	return out
}

func (m *Master) growLock(key string) *sync.Mutex {
	m.grow.mu.Lock()
	defer m.grow.mu.Unlock()
	l, ok := m.grow.locks[key]
	if !ok {
		l = &sync.Mutex{}
		m.grow.locks[key] = l
	}
	return l
}

// growOne creates one volume for (coll, p) unless another assign did so
// meanwhile, and waits until it is writable. Growth is serialized per
// collection and replication.
func (m *Master) growOne(ctx context.Context, coll string, p placement) error {
	key := coll + "/" + p.String()
	lock := m.growLock(key)
	lock.Lock()
	defer lock.Unlock()
	if len(m.writableVolumes(coll, p.String())) > 0 {
		return nil
	}
	if err := m.recentGrowFailure(key); err != nil {
		return err
	}
	err := m.grow1(ctx, coll, p)
	switch {
	case err == nil:
		m.noteGrowSuccess(key)
	case ctx.Err() == nil:
		m.noteGrowFailure(key, coll, p, err)
	}
	return err
}

// grow1 places, creates and registers one volume for (coll, p), and waits
// until it is writable.
func (m *Master) grow1(ctx context.Context, coll string, p placement) error {
	servers, err := m.placeVolume(p)
	if err != nil {
		return err
	}
	res, err := m.apply(ctx, reserveVolumeIDCmd())
	if err != nil {
		return err
	}
	id := res.(uint32)
	if err := m.allocate(ctx, id, coll, p, servers); err != nil {
		return err
	}
	v := VolumeRecord{ID: id, Collection: coll, Replication: p.String(), Replicas: servers, Primary: servers[0]}
	if _, err := m.apply(ctx, addVolumeCmd(v)); err != nil {
		return err
	}
	m.log.Info("grew volume", "volume", id, "collection", coll, "replication", p.String(), "replicas", servers)

	// The volume turns writable when every replica reports it in sync.
	wait := max(5*time.Second, 2*m.deadAfter())
	deadline := time.Now().Add(wait)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var vol *VolumeRecord
		m.fsm.view(func(s *state) { vol = s.Volumes[id] })
		if vol != nil {
			if ok, _, _, _ := m.live.snapshot(time.Now()).volumeHealth(vol, m.cfg.VolumeSizeLimit); ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return apiErrorf(http.StatusServiceUnavailable,
				"created volume %d on %v but its replicas have not reported it in sync within %v; check those volume servers, then retry", id, servers, wait)
		}
		select {
		case <-ctx.Done():
			return apiErrorf(http.StatusServiceUnavailable, "gave up waiting for new volume %d to become writable: %v; retry", id, ctx.Err())
		case <-t.C:
		}
	}
}

// recentGrowFailure returns the error of a growth for key that failed
// less than a pulse ago: assigns then fail at once instead of each trying
// again (a retry storm of placements on a server that just died, each
// creating and removing a volume on the others).
func (m *Master) recentGrowFailure(key string) error {
	m.grow.mu.Lock()
	defer m.grow.mu.Unlock()
	if f := m.grow.failed[key]; f != nil && time.Since(f.at) < m.cfg.Pulse {
		return f.err
	}
	return nil
}

// noteGrowFailure records a failed growth for key and warns about it, at
// most every growLogEvery per key: the operator needs the reason once, not
// once per retrying client.
func (m *Master) noteGrowFailure(key, coll string, p placement, err error) {
	now := time.Now()
	m.grow.mu.Lock()
	f := m.grow.failed[key]
	if f == nil {
		f = &growFailure{}
		m.grow.failed[key] = f
	}
	f.err, f.at = err, now
	quiet := now.Sub(f.logged) < growLogEvery
	if !quiet {
		f.logged = now
	}
	m.grow.mu.Unlock()
	if !quiet {
		m.log.Warn("no writable volume and could not grow one; assigns fail until this is fixed (check that enough volume servers are alive with free slots)",
			"collection", coll, "replication", p.String(), "err", err)
	}
}

// noteGrowSuccess forgets a failure of key.
func (m *Master) noteGrowSuccess(key string) {
	m.grow.mu.Lock()
	delete(m.grow.failed, key)
	m.grow.mu.Unlock()
}

// placeVolume chooses servers for a new volume among alive registered ones.
func (m *Master) placeVolume(p placement) ([]string, error) {
	view := m.live.snapshot(time.Now())
	var cands []candidate
	m.fsm.view(func(s *state) {
		count := map[string]int{}
		for _, v := range s.Volumes {
			for _, r := range v.Replicas {
				count[r]++
			}
		}
		for url, srv := range s.Servers {
			if !view.alive(url) || srv.Draining {
				continue
			}
			n := max(count[url], len(view.servers[url].volumes))
			cands = append(cands, candidate{URL: url, DC: srv.DC, Rack: srv.Rack, Volumes: n, MaxVolumes: int(srv.MaxVolumes)})
		}
	})
	slices.SortFunc(cands, func(a, b candidate) int {
		if a.URL < b.URL {
			return -1
		}
		if a.URL > b.URL {
			return 1
		}
		return 0
	})
	servers, err := pickServers(cands, p, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		return nil, apiErrorf(http.StatusServiceUnavailable, "%v", err)
	}
	return servers, nil
}

// allocate creates the empty volume on every chosen server in parallel.
func (m *Master) allocate(ctx context.Context, id uint32, coll string, p placement, servers []string) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type result struct {
		server string
		err    error
	}
	results := make(chan result, len(servers))
	for _, s := range servers {
		go func() {
			conn, err := m.pool.Conn(s)
			if err == nil {
				_, err = pb.NewVolumeClient(conn).AllocateVolume(actx, &pb.AllocateVolumeRequest{
					VolumeId: id, Collection: coll, Replication: p.String(),
				})
			}
			results <- result{s, err}
		}()
	}
	var errs []error
	var created []string // servers that may hold the new volume
	for range servers {
		r := <-results
		if r.err == nil || status.Code(r.err) == codes.DeadlineExceeded {
			created = append(created, r.server)
		}
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", r.server, errorMessage(r.err)))
		}
	}
	if len(errs) > 0 {
		m.unallocate(ctx, id, created)
		return apiErrorf(http.StatusServiceUnavailable, "could not create volume %d on every chosen server (%v): %v; check those volume servers, then retry",
			id, servers, errors.Join(errs...))
	}
	return nil
}

// unallocate removes volume id, created on servers by a growth that
// failed on another server, from each of them: the id was never registered, so
// nothing was written to it, and left alone the copies would take the
// servers' volume slots for good. Best effort: a server that cannot be
// reached now keeps an empty, unregistered volume, which is logged.
func (m *Master) unallocate(ctx context.Context, id uint32, servers []string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := m.pool.Conn(s)
			if err == nil {
				_, err = pb.NewVolumeClient(conn).DeleteVolume(dctx, &pb.DeleteVolumeRequest{VolumeId: id})
			}
			if err != nil {
				m.log.Warn("could not remove a volume left by a failed growth; it stays empty and unregistered on that server", "volume", id, "server", s, "err", errorMessage(err))
			}
		}()
	}
	wg.Wait()
}

// lookup lists the alive replicas of volume id, primary first.
func (m *Master) lookup(id uint32) (*pb.LookupResponse, error) {
	_, since, leading := m.leaderEpoch()
	view := m.live.snapshot(time.Now())
	var vol *VolumeRecord
	servers := map[string]ServerRecord{}
	m.fsm.view(func(s *state) {
		if v, ok := s.Volumes[id]; ok {
			vc := *v
			vc.Replicas = slices.Clone(v.Replicas)
			vol = &vc
			for _, r := range v.Replicas {
				servers[r] = s.Servers[r]
			}
		}
	})
	if vol == nil {
		return nil, apiErrorf(http.StatusNotFound, "volume %d not found", id)
	}
	// Right after an election no server has reported yet: list them all
	// rather than none.
	all := !leading || m.inGrace(since)
	order := append([]string{vol.Primary}, slices.DeleteFunc(slices.Clone(vol.Replicas), func(r string) bool { return r == vol.Primary })...)
	resp := &pb.LookupResponse{VolumeId: id, Primary: vol.Primary}
	for _, r := range order {
		if !all && !view.alive(r) {
			continue
		}
		srv := servers[r]
		public := srv.PublicURL
		if public == "" {
			public = r
		}
		resp.Locations = append(resp.Locations, &pb.Location{Url: r, PublicUrl: public, GrpcPort: srv.GRPCPort})
	}
	if len(resp.Locations) == 0 {
		return nil, apiErrorf(http.StatusServiceUnavailable, "volume %d: none of its replicas %v has sent a heartbeat recently; check those volume servers", id, vol.Replicas)
	}
	resp.Writable, _, _, _ = view.volumeHealth(vol, m.cfg.VolumeSizeLimit)
	auth, err := m.cfg.Tokens.SignRead(id)
	if err != nil {
		return nil, err
	}
	resp.Auth = auth
	return resp, nil
}
