// Package gcfloor keeps Go's garbage collector from running many times a
// second in a process whose live heap is small but which allocates fast.
//
// A filer keeps its state in a memory-mapped file, so its Go heap holds
// only a few MiB; yet each commit allocates page buffers, copies of the
// command and its data, and protobuf messages, a few hundred KiB under a
// database's small fsyncs. With the default GOGC=100 the collector aims at
// twice the live heap, and a filer under pgbench ran 21 to 28 collections
// a second, an eighth of its CPU. Set raises the heap goal to at least a
// floor: after every collection it sets the GC percentage so that the next
// one starts near the floor, or leaves it at 100 once the live heap is half
// the floor or more (a mount holding buffered writes), so memory stays
// within about the floor above what the default would use.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// DefaultFloor is the heap goal the cairn processes keep at least.
const DefaultFloor = 64 << 20

// maxPercent bounds the GC percentage Set chooses.
const maxPercent = 5000

// minLive is the live heap assumed before the first collection measured
// one (the Go runtime's own minimum heap goal is 4 MiB).
const minLive = 2 << 20

// Set keeps the heap goal at floor bytes or more for the life of the
// process. It does nothing when GOGC is set in the environment (the
// operator's choice wins) or floor is 0. Call it once.
func Set(floor uint64) {
	if _, ok := os.LookupEnv("GOGC"); ok || floor == 0 {
		return
	}
	t := &tuner{floor: floor, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
}

type tuner struct {
	floor  uint64
	sample []metrics.Sample
}

// sentinel is garbage as soon as it is made; its finalizer runs after the
// collection that finds it, which is how tune runs once per collection.
// (It holds a pointer, so it is never one of the tiny objects whose
// finalizers may be delayed.)
type sentinel struct{ t *tuner }

func (t *tuner) tune() {
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	debug.SetGCPercent(percent(live, t.floor))
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.tune() })
}

// percent is the GC percentage that puts the heap goal of a live heap of
// live bytes at floor, and at least the default 100.
func percent(live, floor uint64) int {
	live = max(live, minLive)
	if floor <= 2*live {
		return 100
	}
	return int(min(floor*100/live-100, maxPercent))
}
