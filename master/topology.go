package master

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

// liveness is the leader's soft state: what each volume server reported in
// its last heartbeat and when. It is rebuilt from heartbeats after a leader
// change and never replicated. Safe for concurrent use.
type liveness struct {
	deadAfter time.Duration // a server is dead when its last heartbeat is older

	mu      sync.Mutex // guards servers
	servers map[string]*serverBeat
}

type serverBeat struct {
	at        time.Time
	freeBytes uint64
	volumes   map[uint32]*pb.VolumeInfo
}

func newLiveness(deadAfter time.Duration) *liveness {
	return &liveness{deadAfter: deadAfter, servers: map[string]*serverBeat{}}
}

// record stores one heartbeat received at now.
func (l *liveness) record(hb *pb.HeartbeatRequest, now time.Time) {
	vols := make(map[uint32]*pb.VolumeInfo, len(hb.GetVolumes()))
	for _, v := range hb.GetVolumes() {
		vols[v.GetId()] = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.servers[hb.GetUrl()] = &serverBeat{at: now, freeBytes: hb.GetFreeBytes(), volumes: vols}
}

// reset forgets everything (on becoming leader: older reports are stale).
func (l *liveness) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.servers = map[string]*serverBeat{}
}

// snapshot returns a consistent view for computations at now.
func (l *liveness) snapshot(now time.Time) liveView {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := liveView{now: now, deadAfter: l.deadAfter, servers: make(map[string]*serverBeat, len(l.servers))}
	for u, s := range l.servers {
		v.servers[u] = s // serverBeat values are replaced, never mutated
	}
	return v
}

// liveView is an immutable copy of the liveness table.
type liveView struct {
	now       time.Time
	deadAfter time.Duration
	servers   map[string]*serverBeat
}

func (v liveView) alive(url string) bool {
	s, ok := v.servers[url]
	return ok && v.now.Sub(s.at) < v.deadAfter
}

func (v liveView) lastSeen(url string) (time.Time, bool) {
	s, ok := v.servers[url]
	if !ok {
		return time.Time{}, false
	}
	return s.at, true
}

// volumeHealth says whether vol is writable with limit bytes as the size
// limit, and why not. size is the largest size any replica reported.
func (v liveView) volumeHealth(vol *VolumeRecord, limit uint64) (writable bool, size, needles uint64, reason string) {
	for _, r := range vol.Replicas {
		s, ok := v.servers[r]
		if !ok {
			if reason == "" {
				reason = fmt.Sprintf("replica %s has not sent a heartbeat to this leader", r)
			}
			continue
		}
		vi, ok := s.volumes[vol.ID]
		if ok {
			size = max(size, vi.GetSize())
			needles = max(needles, vi.GetNeedleCount())
		}
		if reason != "" {
			continue
		}
		switch {
		case v.now.Sub(s.at) >= v.deadAfter:
			reason = fmt.Sprintf("replica %s missed heartbeats for %v and is considered dead", r, v.now.Sub(s.at).Round(time.Millisecond))
		case !ok:
			reason = fmt.Sprintf("replica %s does not report the volume", r)
		case vi.GetReadOnly():
			reason = fmt.Sprintf("replica %s reports it read-only: %s", r, vi.GetError())
		case !vi.GetInSync():
			reason = fmt.Sprintf("replica %s is catching up with its peers", r)
		}
	}
	if reason == "" && !slices.Contains(vol.Replicas, vol.Primary) {
		reason = "primary " + vol.Primary + " is not a replica"
	}
	if reason == "" && size >= limit {
		reason = fmt.Sprintf("volume is full: %d bytes, limit %d", size, limit)
	}
	return reason == "", size, needles, reason
}
