package shell

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cairn-storage/cairn/internal/pb"
)

func init() {
	register(&Command{
		Name:    "volume.list",
		Summary: "volumes by data center, rack and server, with size, needles and garbage",
		Usage:   "[-volumeId N]",
		Help: `Lists the topology as the master leader knows it, and under each volume
server the volumes it holds as that server reports them: id, collection,
replication, size, live needle count, garbage ratio (bytes vacuum would
reclaim / size), whether this copy is in sync and read-only, and from the
master the replicas, the primary and whether the volume is writable.
Volumes with fewer live replicas than their placement asks for are marked
UNDER-REPLICATED (repair them with volume.fix.replication); a server being
evacuated is shown as draining.`,
		New: func(fs *flag.FlagSet) Runner {
			c := &volumeList{}
			fs.UintVar(&c.vid, "volumeId", 0, "list only this volume (0: all)")
			return c
		},
	})
}

type volumeList struct{ vid uint }

// VolumeListJSON is the JSON output of volume.list.
type VolumeListJSON struct {
	DataCenters []DataCenterJSON `json:"data_centers"`
	// UnderReplicated lists the volumes with fewer live replicas than
	// their placement asks for (volume.fix.replication repairs them).
	UnderReplicated []UnderReplicaJSON `json:"under_replicated"`
}

// UnderReplicaJSON is one under-replicated volume in volume.list.
type UnderReplicaJSON struct {
	ID       uint32   `json:"id"`
	Wanted   int      `json:"wanted"`
	Live     []string `json:"live"`     // replicas on live servers
	Missing  []string `json:"missing"`  // replicas on dead or unknown servers
	Replicas []string `json:"replicas"` // the replica set per the master
}

// DataCenterJSON is one data center in volume.list.
type DataCenterJSON struct {
	Name  string     `json:"name"`
	Racks []RackJSON `json:"racks"`
}

// RackJSON is one rack in volume.list.
type RackJSON struct {
	Name    string           `json:"name"`
	Servers []ServerVolsJSON `json:"servers"`
}

// ServerVolsJSON is one volume server and its volumes in volume.list.
type ServerVolsJSON struct {
	URL       string           `json:"url"`
	Alive     bool             `json:"alive"`
	Draining  bool             `json:"draining"`
	FreeBytes uint64           `json:"free_bytes"`
	Error     string           `json:"error,omitempty"`
	Volumes   []VolumeCopyJSON `json:"volumes"`
}

// VolumeCopyJSON is one copy of a volume on one server in volume.list.
type VolumeCopyJSON struct {
	ID           uint32   `json:"id"`
	Collection   string   `json:"collection"`
	Replication  string   `json:"replication"`
	Size         uint64   `json:"size"`
	NeedleCount  uint64   `json:"needle_count"`
	DeletedBytes uint64   `json:"deleted_bytes"`
	GarbageRatio float64  `json:"garbage_ratio"`
	InSync       bool     `json:"in_sync"`
	ReadOnly     bool     `json:"read_only"`
	Error        string   `json:"error,omitempty"`
	Replicas     []string `json:"replicas"`
	Primary      string   `json:"primary"`
	Writable     bool     `json:"writable"`
	Reason       string   `json:"reason,omitempty"` // why the master does not write to it
	// UnderReplicated: fewer live replicas than the placement asks for.
	UnderReplicated bool `json:"under_replicated"`
	// Stray: this server holds a copy but is not in the replica set (left
	// by an interrupted copy, or a replica dropped while its server was
	// down); it is not used and volume.fix.replication may replace it.
	Stray bool `json:"stray,omitempty"`
}

func (c *volumeList) Run(ctx context.Context, env *Env, args []string) error {
	if err := wantArgs("volume.list", args, 0, 0, "no arguments"); err != nil {
		return err
	}
	st, err := env.leaderStatus(ctx)
	if err != nil {
		return fmt.Errorf("volume.list: %w", err)
	}
	byID := map[uint32]*pb.VolumeStatus{}
	for _, v := range st.Volumes {
		byID[v.Id] = v
	}
	var addrs []string
	for _, s := range st.Servers {
		addrs = append(addrs, s.Url)
	}
	alive := map[string]bool{}
	for _, s := range st.Servers {
		alive[s.Url] = s.Alive
	}
	under := map[uint32]bool{}
	var unders []UnderReplicaJSON
	for _, v := range st.Volumes {
		if c.vid != 0 && uint(v.Id) != c.vid {
			continue
		}
		u := UnderReplicaJSON{ID: v.Id, Replicas: slices.Clone(v.Replicas), Live: []string{}, Missing: []string{}}
		if p, err := parsePlacement(v.Replication); err == nil {
			u.Wanted = p.copies()
		}
		for _, r := range v.Replicas {
			if alive[r] {
				u.Live = append(u.Live, r)
			} else {
				u.Missing = append(u.Missing, r)
			}
		}
		if len(u.Live) < u.Wanted {
			under[v.Id] = true
			unders = append(unders, u)
		}
	}
	answers := serverStatuses(ctx, env, addrs)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	out := VolumeListJSON{DataCenters: []DataCenterJSON{}, UnderReplicated: []UnderReplicaJSON{}}
	out.UnderReplicated = append(out.UnderReplicated, unders...)
	servers := slices.Clone(st.Servers)
	slices.SortFunc(servers, func(a, b *pb.ServerStatus) int {
		return cmp.Or(cmp.Compare(a.Dc, b.Dc), cmp.Compare(a.Rack, b.Rack), cmp.Compare(a.Url, b.Url))
	})
	for _, s := range servers {
		if n := len(out.DataCenters); n == 0 || out.DataCenters[n-1].Name != s.Dc {
			out.DataCenters = append(out.DataCenters, DataCenterJSON{Name: s.Dc})
		}
		dc := &out.DataCenters[len(out.DataCenters)-1]
		if n := len(dc.Racks); n == 0 || dc.Racks[n-1].Name != s.Rack {
			dc.Racks = append(dc.Racks, RackJSON{Name: s.Rack})
		}
		rack := &dc.Racks[len(dc.Racks)-1]
		sv := ServerVolsJSON{URL: s.Url, Alive: s.Alive, Draining: s.Draining, FreeBytes: s.FreeBytes, Volumes: []VolumeCopyJSON{}}
		ans := answers[s.Url]
		if ans.err != nil {
			sv.Error = rpcMessage(ans.err)
		} else {
			sv.FreeBytes = ans.status.FreeBytes
			for _, vi := range ans.status.Volumes {
				if c.vid != 0 && uint(vi.Id) != c.vid {
					continue
				}
				vc := volumeCopy(vi, byID[vi.Id])
				vc.UnderReplicated = under[vi.Id]
				if ms := byID[vi.Id]; ms != nil && !slices.Contains(ms.Replicas, s.Url) {
					vc.Stray = true
				}
				sv.Volumes = append(sv.Volumes, vc)
			}
			slices.SortFunc(sv.Volumes, func(a, b VolumeCopyJSON) int { return cmp.Compare(a.ID, b.ID) })
		}
		rack.Servers = append(rack.Servers, sv)
	}
	return env.Emit(out, func(w io.Writer) error { return printVolumeList(w, &out) })
}

func volumeCopy(vi *pb.VolumeInfo, ms *pb.VolumeStatus) VolumeCopyJSON {
	vc := VolumeCopyJSON{
		ID: vi.Id, Collection: vi.Collection, Replication: vi.Replication, Size: vi.Size,
		NeedleCount: vi.NeedleCount, DeletedBytes: vi.DeletedBytes, InSync: vi.InSync,
		ReadOnly: vi.ReadOnly, Error: vi.Error, Replicas: []string{},
	}
	if vi.Size > 0 {
		vc.GarbageRatio = float64(vi.DeletedBytes) / float64(vi.Size)
	}
	if ms != nil {
		vc.Replicas, vc.Primary, vc.Writable, vc.Reason = slices.Clone(ms.Replicas), ms.Primary, ms.Writable, ms.Reason
	} else {
		vc.Reason = "the master does not know this volume"
	}
	return vc
}

func printVolumeList(w io.Writer, l *VolumeListJSON) error {
	if len(l.DataCenters) == 0 {
		fmt.Fprintln(w, "no volume servers known to the master leader")
	}
	for _, dc := range l.DataCenters {
		fmt.Fprintf(w, "dc %s\n", dc.Name)
		for _, r := range dc.Racks {
			fmt.Fprintf(w, "  rack %s\n", r.Name)
			for _, s := range r.Servers {
				state := "alive"
				if !s.Alive {
					state = "DEAD"
				}
				if s.Draining {
					state += " (draining: volume.evacuate)"
				}
				fmt.Fprintf(w, "    server %s  %s  free %s  %d volumes\n", s.URL, state, humanBytes(s.FreeBytes), len(s.Volumes))
				if s.Error != "" {
					fmt.Fprintf(w, "      cannot list volumes: %s\n", s.Error)
					continue
				}
				if len(s.Volumes) == 0 {
					continue
				}
				tw := newTable(w)
				fmt.Fprintf(tw, "      ID\tCOLLECTION\tREPL\tSIZE\tNEEDLES\tGARBAGE\tSTATE\tPRIMARY\tREPLICAS\n")
				for _, v := range s.Volumes {
					fmt.Fprintf(tw, "      %d\t%s\t%s\t%s\t%d\t%.1f%%\t%s\t%s\t%s\n", v.ID, orDash(v.Collection), v.Replication,
						humanBytes(v.Size), v.NeedleCount, 100*v.GarbageRatio, volumeState(v), orDash(v.Primary), strings.Join(v.Replicas, ","))
				}
				tw.Flush()
			}
		}
	}
	for _, u := range l.UnderReplicated {
		fmt.Fprintf(w, "UNDER-REPLICATED volume %d: %d of %d replicas live (%s); missing on %s; run volume.fix.replication\n",
			u.ID, len(u.Live), u.Wanted, orDash(strings.Join(u.Live, ",")), orDash(strings.Join(u.Missing, ",")))
	}
	return nil
}

// volumeState is "writable", or "read-only" with the first reason known,
// marked when the volume is under-replicated.
func volumeState(v VolumeCopyJSON) string {
	if v.Stray {
		return "stray copy (this server is not in the replica set; unused)"
	}
	if v.UnderReplicated {
		return "UNDER-REPLICATED, " + volumeHealthState(v)
	}
	return volumeHealthState(v)
}

func volumeHealthState(v VolumeCopyJSON) string {
	switch {
	case v.ReadOnly:
		return "read-only (" + orDash(v.Error) + ")"
	case !v.InSync:
		return "read-only (catching up)"
	case !v.Writable:
		return "read-only (" + orDash(v.Reason) + ")"
	}
	return "writable"
}
