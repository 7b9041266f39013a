package master

import (
	"cmp"
	"slices"
	"time"

	"github.com/cairn-storage/cairn/internal/pb"
)

// clusterStatus describes this master's view: Raft, servers and volumes.
// Liveness and writability are only known on the leader; a follower reports
// servers as not alive and volumes as not writable, naming the leader.
func (m *Master) clusterStatus() *pb.ClusterStatusResponse {
	resp := &pb.ClusterStatusResponse{}
	node := m.node.Load()
	if node == nil {
		return resp
	}
	r := node.Raft()
	resp.Leader = node.LeaderHTTP()
	_, since, leading := m.leaderEpoch()
	resp.IsLeader = leading
	resp.Term, resp.CommitIndex, resp.AppliedIndex = r.CurrentTerm(), r.CommitIndex(), r.AppliedIndex()
	if peers, err := node.Peers(); err == nil {
		for _, p := range peers {
			resp.Peers = append(resp.Peers, &pb.PeerStatus{Id: p.ID, Address: p.Address, Suffrage: p.Suffrage})
		}
	}
	view := m.live.snapshot(time.Now())
	m.fsm.view(func(s *state) {
		resp.MaxVolumeId, resp.MaxFileKey = s.MaxVolumeID, s.MaxFileKey
		for _, srv := range s.Servers {
			st := &pb.ServerStatus{Url: srv.URL, Dc: srv.DC, Rack: srv.Rack, MaxVolumes: srv.MaxVolumes, Draining: srv.Draining}
			if leading {
				st.Alive = view.alive(srv.URL)
				ref := since
				if b, ok := view.servers[srv.URL]; ok {
					st.FreeBytes = b.freeBytes
					st.LastHeartbeatUnixMs = b.at.UnixMilli()
					ref = b.at
				}
				st.SilentMs = uint64(max(view.now.Sub(ref), 0).Milliseconds())
			}
			resp.Servers = append(resp.Servers, st)
		}
		for _, v := range s.Volumes {
			vs := &pb.VolumeStatus{
				Id: v.ID, Collection: v.Collection, Replication: v.Replication,
				Primary: v.Primary, Replicas: slices.Clone(v.Replicas),
			}
			if leading {
				vs.Writable, vs.Size, vs.NeedleCount, vs.Reason = view.volumeHealth(v, m.cfg.VolumeSizeLimit)
			} else {
				vs.Reason = "this master is a follower; ask the leader " + resp.Leader
			}
			resp.Volumes = append(resp.Volumes, vs)
		}
	})
	slices.SortFunc(resp.Servers, func(a, b *pb.ServerStatus) int { return cmp.Compare(a.Url, b.Url) })
	slices.SortFunc(resp.Volumes, func(a, b *pb.VolumeStatus) int { return cmp.Compare(a.Id, b.Id) })
	return resp
}

// StatusJSON is the JSON form of GET /cluster/status.
type StatusJSON struct {
	IsLeader     bool
	Leader       string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	MaxVolumeID  uint32
	MaxFileKey   uint64
	Peers        []PeerJSON
	Servers      []ServerJSON
	Volumes      []VolumeJSON
}

// PeerJSON is one master in StatusJSON.
type PeerJSON struct {
	ID, Address, Suffrage string
}

// ServerJSON is one volume server in StatusJSON.
type ServerJSON struct {
	URL           string
	DC, Rack      string
	Alive         bool
	Free          uint64 // bytes free on its data directory
	Max           uint32 // max volumes
	LastHeartbeat string `json:",omitempty"` // RFC 3339
	Draining      bool   `json:",omitempty"` // being evacuated
}

// VolumeJSON is one volume in StatusJSON.
type VolumeJSON struct {
	ID          uint32
	Collection  string
	Replication string
	Replicas    []string
	Primary     string
	Writable    bool
	Size        uint64
	NeedleCount uint64
	Reason      string `json:",omitempty"`
}

func statusJSON(s *pb.ClusterStatusResponse) StatusJSON {
	out := StatusJSON{
		IsLeader: s.IsLeader, Leader: s.Leader, Term: s.Term, CommitIndex: s.CommitIndex,
		AppliedIndex: s.AppliedIndex, MaxVolumeID: s.MaxVolumeId, MaxFileKey: s.MaxFileKey,
		Peers: []PeerJSON{}, Servers: []ServerJSON{}, Volumes: []VolumeJSON{},
	}
	for _, p := range s.Peers {
		out.Peers = append(out.Peers, PeerJSON{ID: p.Id, Address: p.Address, Suffrage: p.Suffrage})
	}
	for _, v := range s.Servers {
		sj := ServerJSON{URL: v.Url, DC: v.Dc, Rack: v.Rack, Alive: v.Alive, Free: v.FreeBytes, Max: v.MaxVolumes, Draining: v.Draining}
		if v.LastHeartbeatUnixMs != 0 {
			sj.LastHeartbeat = time.UnixMilli(v.LastHeartbeatUnixMs).UTC().Format(time.RFC3339Nano)
		}
		out.Servers = append(out.Servers, sj)
	}
	for _, v := range s.Volumes {
		out.Volumes = append(out.Volumes, VolumeJSON{
			ID: v.Id, Collection: v.Collection, Replication: v.Replication, Replicas: v.Replicas,
			Primary: v.Primary, Writable: v.Writable, Size: v.Size, NeedleCount: v.NeedleCount, Reason: v.Reason,
		})
	}
	return out
}
