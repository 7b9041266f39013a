package master

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// ErrBadReplication is wrapped when a replication string is not three digits.
var ErrBadReplication = errors.New("master: bad replication")

// ErrNoRoom is wrapped when too few alive servers with free slots exist for a
// placement.
var ErrNoRoom = errors.New("master: not enough volume servers")

// placement is a parsed SeaweedFS replica placement "xyz".
type placement struct {
	DiffDC   int // x: copies in other data centers
	DiffRack int // y: copies on other racks of the main data center
	SameRack int // z: other servers in the main rack
}

func parsePlacement(s string) (placement, error) {
	if len(s) != 3 {
		return placement{}, fmt.Errorf("%w %q: want three digits xyz, e.g. 000 (one copy) or 001 (two copies in one rack)", ErrBadReplication, s)
	}
	var d [3]int
	for i := range 3 {
		if s[i] < '0' || s[i] > '9' {
			return placement{}, fmt.Errorf("%w %q: want three digits xyz, e.g. 000 (one copy) or 001 (two copies in one rack)", ErrBadReplication, s)
		}
		d[i] = int(s[i] - '0')
	}
	return placement{DiffDC: d[0], DiffRack: d[1], SameRack: d[2]}, nil
}

func (p placement) String() string { return fmt.Sprintf("%d%d%d", p.DiffDC, p.DiffRack, p.SameRack) }

// Copies is the number of replicas of a volume with this placement.
func (p placement) Copies() int { return p.DiffDC + p.DiffRack + p.SameRack + 1 }

// candidate is an alive volume server as placement sees it.
type candidate struct {
	URL        string
	DC, Rack   string
	Volumes    int // volumes it holds
	MaxVolumes int
}

func (c candidate) free() bool { return c.Volumes < c.MaxVolumes }

// pickServers chooses p.Copies() distinct servers: the first (the primary)
// and z others in one rack, y more on distinct other racks of the same data
// center and x more in distinct other data centers. Servers with fewer
// volumes are preferred; rnd breaks ties. cands are the alive servers.
func pickServers(cands []candidate, p placement, rnd *rand.Rand) ([]string, error) {
	var free []candidate
	for _, c := range cands {
		if c.free() {
			free = append(free, c)
		}
	}
	// Shuffle, then stable-sort by load: ties end up in random order.
	rnd.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	slices.SortStableFunc(free, func(a, b candidate) int { return cmp.Compare(a.Volumes, b.Volumes) })

	type rackKey struct{ dc, rack string }
	byRack := map[rackKey][]candidate{}
	var rackOrder []rackKey
	for _, c := range free {
		k := rackKey{c.DC, c.Rack}
		if _, ok := byRack[k]; !ok {
			rackOrder = append(rackOrder, k)
		}
		byRack[k] = append(byRack[k], c)
	}

	best, bestLoad := []string(nil), -1
	for _, main := range rackOrder {
		inRack := byRack[main]
		if len(inRack) < p.SameRack+1 {
			continue
		}
		picked := slices.Clone(inRack[:p.SameRack+1])
		// Other racks of the main data center: least loaded server of each,
		// least loaded racks first.
		var others []candidate
		for _, k := range rackOrder {
			if k.dc == main.dc && k != main {
				others = append(others, byRack[k][0])
			}
		}
		if len(others) < p.DiffRack {
			continue
		}
		picked = append(picked, others[:p.DiffRack]...)
		// Other data centers: least loaded server of each.
		var dcs []candidate
		seenDC := map[string]bool{main.dc: true}
		for _, c := range free {
			if !seenDC[c.DC] {
				seenDC[c.DC] = true
				dcs = append(dcs, c)
			}
		}
		if len(dcs) < p.DiffDC {
			continue
		}
		picked = append(picked, dcs[:p.DiffDC]...)
		load := 0
		for _, c := range picked {
			load += c.Volumes
		}
		if bestLoad < 0 || load < bestLoad {
			bestLoad = load
			best = best[:0]
			for _, c := range picked {
				best = append(best, c.URL)
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: replication %s needs %d servers with free volume slots (%d in one rack, %d on other racks of that data center, %d in other data centers); %d of %d alive servers have free slots and they do not fit that layout; start more volume servers or raise their max volumes",
			ErrNoRoom, p, p.Copies(), p.SameRack+1, p.DiffRack, p.DiffDC, len(free), len(cands))
	}
	return best, nil
}
