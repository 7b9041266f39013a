package filer

import (
	"context"
	"sync"
	"time"
)

// gcBatch is how many queued needles one GC pass deletes.
const gcBatch = 256

// gcParallel is how many deletes a GC pass has in flight. A volume server
// appends the tombstones of concurrent deletes with one fdatasync (group
// commit); one delete at a time cost an fdatasync each, and under a
// database's fsync load (every WAL flush leaves a shadowed needle behind)
// the deletes took as many fdatasyncs as the writers, on the same volumes.
const gcParallel = 16

// gcLoop runs on every member and works only while it is leader: it deletes
// queued needles from the volume servers and then removes them from the
// queue through Raft. A needle is dequeued only after its delete succeeded
// (or it was already gone), so a crash anywhere leaves it queued, never
// leaked; a needle is queued only when nothing references it, so nothing
// referenced is ever deleted.
func (s *Server) gcLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.node == nil || !s.node.IsLeader() {
			continue
		}
		if err := s.expireUploads(ctx); err != nil {
			s.log.Warn("expiring abandoned uploads failed; will retry", "err", err)
		}
		if err := s.expireSessions(ctx); err != nil {
			s.log.Warn("expiring idle client sessions failed; will retry", "err", err)
		}
		for {
			n, err := s.gcPass(ctx)
			if err != nil {
				s.log.Warn("needle garbage collection pass failed; will retry", "err", err)
				break
			}
			if n < gcBatch {
				break
			}
		}
	}
}

// reserve registers fids as uploads in flight on this (leader) filer.
func (s *Server) reserve(ctx context.Context, fids []string) error {
	_, err := s.applyOp(ctx, &BeginUpload{Fids: fids, Expires: time.Now().Add(s.cfg.UploadTimeout).UnixNano()})
	return err
}

// expireUploads queues the needles of uploads whose writer never
// referenced them within the upload timeout.
func (s *Server) expireUploads(ctx context.Context) error {
	now := time.Now().UnixNano()
	n, err := s.fsm.State().ExpiredUploads(now)
	if err != nil || n == 0 {
		return err
	}
	if _, err := s.applyOp(ctx, &ExpireUploads{Before: now}); err != nil {
		return err
	}
	s.log.Info("queued needles of abandoned uploads for deletion", "count", n)
	return nil
}

// SessionTTL is how long an idle client session is remembered.
const SessionTTL = time.Hour

// expireSessions drops client sessions idle for longer than SessionTTL.
func (s *Server) expireSessions(ctx context.Context) error {
	before := time.Now().Add(-SessionTTL).UnixNano()
	n, err := s.fsm.State().StaleSessions(before)
	if err != nil || n == 0 {
		return err
	}
	_, err = s.applyOp(ctx, &ExpireSessions{Before: before})
	return err
}

// gcPass deletes up to gcBatch queued needles and returns how many it
// dequeued.
func (s *Server) gcPass(ctx context.Context) (int, error) {
	fids, err := s.fsm.State().PendingDeletes(gcBatch)
	if err != nil || len(fids) == 0 {
		return 0, err
	}
	var (
		mu   sync.Mutex
		done []string
		wg   sync.WaitGroup
		sem  = make(chan struct{}, gcParallel)
	)
	for _, f := range fids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.data.Delete(ctx, f); err != nil {
				s.log.Debug("needle delete failed; it stays queued", "fid", f, "err", err)
				return
			}
			mu.Lock()
			done = append(done, f)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(done) == 0 {
		return 0, nil
	}
	if _, err := s.applyOp(ctx, &DequeueDeleted{Fids: done}); err != nil {
		return 0, err
	}
	s.met.gcDeleted.Add(float64(len(done)))
	return len(done), nil
}
