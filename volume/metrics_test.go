package volume

import (
	"testing"
	"time"
)

func TestCommitStatsHistogram(t *testing.T) {
	var a, b commitStats
	a.record(50*time.Microsecond, 1) // below the first bound
	a.record(3*time.Millisecond, 3)  // in (2.5ms, 5ms]
	b.record(time.Minute, 1000)      // above every bound: +Inf only
	var lat, size histSnapshot
	for _, c := range []*commitStats{&a, &b} {
		lat.add(c.latency[:], syncBounds[:], float64(c.latencyNs.Load())/1e9)
		size.add(c.size[:], batchBounds[:], float64(c.sizeTotal.Load()))
	}
	if lat.count != 3 || size.count != 3 {
		t.Fatalf("counts %d %d, want 3", lat.count, size.count)
	}
	for bound, want := range map[float64]uint64{0.0001: 1, 0.0025: 1, 0.005: 2, 5: 2} {
		if got := lat.buckets[bound]; got != want {
			t.Errorf("latency bucket le=%v: %d, want %d", bound, got, want)
		}
	}
	for bound, want := range map[float64]uint64{1: 1, 2: 1, 4: 2, 512: 2} {
		if got := size.buckets[bound]; got != want {
			t.Errorf("batch bucket le=%v: %d, want %d", bound, got, want)
		}
	}
	if want := (60*time.Second + 3050*time.Microsecond).Seconds(); lat.sum < want-1e-9 || lat.sum > want+1e-9 {
		t.Errorf("latency sum %v, want %v", lat.sum, want)
	}
	if size.sum != 1004 {
		t.Errorf("batch sum %v, want 1004", size.sum)
	}
}
