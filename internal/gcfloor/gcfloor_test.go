package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{8 << 20, 64 << 20, 700},    // goal 8 MiB * 8 = 64 MiB
		{32 << 20, 64 << 20, 100},   // half the floor: the default already reaches it
		{300 << 20, 64 << 20, 100},  // a big heap keeps the default
		{0, 64 << 20, 3100},         // before any collection: 2 MiB assumed
		{1, 1 << 40, maxPercent},    // bounded
		{16 << 20, 64 << 20, 300},   // 16 MiB * 4 = 64 MiB
		{20 << 20, 64 << 20, 220},   // rounds down: goal just under the floor
		{40 << 20, 64 << 20, 100},   // above half: default
		{10 << 20, 0, 100},          // no floor
		{minLive, 2 * minLive, 100}, // exactly twice: default
	} {
		if got := percent(c.live, c.floor); got != c.want {
			t.Errorf("percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
}

var sink []byte

// collections counts the collections while allocating n MiB of garbage.
func collections(n int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		sink = make([]byte, 1<<20)
	}
	sink = nil
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// gogc reads the GC percentage in force.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// With a floor, a process with a small heap that allocates 512 MiB of
// garbage collects a handful of times instead of once every few MiB; once
// the live heap reaches half the floor, the next collections put the
// default back. With GOGC set, Set leaves the percentage alone.
func TestSetFloor(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	runtime.GC()
	base := collections(512)

	t.Setenv("GOGC", "100")
	Set(128 << 20)
	if p := gogc(); p != 100 {
		t.Fatalf("with GOGC set, Set changed the GC percentage to %d", p)
	}

	unsetGOGC(t)
	Set(128 << 20)
	floored := collections(512)
	if floored*4 > base || floored > 12 {
		t.Fatalf("512 MiB of garbage: %d collections with a 128 MiB floor, %d without", floored, base)
	}
	t.Logf("512 MiB of garbage: %d collections with a 128 MiB floor, %d without", floored, base)

	live := make([]byte, 96<<20)
	for i := range live {
		live[i] = 1 // resident, like buffered writes
	}
	deadline := time.Now().Add(30 * time.Second)
	for gogc() != 100 {
		if time.Now().After(deadline) {
			t.Fatalf("with 96 MiB live and a 128 MiB floor the GC percentage stays %d", gogc())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the tuner runs after the collection, on the finalizer goroutine
	}
	runtime.KeepAlive(live)
}

func unsetGOGC(t *testing.T) {
	t.Helper()
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
}
