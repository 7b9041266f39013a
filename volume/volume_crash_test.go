package volume

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs/errorfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

// crashHistory records what writers attempted and what was acknowledged.
type crashHistory struct {
	mu         sync.Mutex
	attempted  map[uint64][][]byte // every payload ever written to a key
	acked      map[uint64][]byte   // acknowledged payload per key
	delTried   map[uint64]bool
	delAcked   map[uint64]bool
	ackedCount atomic.Int64
}

func (h *crashHistory) snapshot() (acked map[uint64][]byte, deleted map[uint64]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	acked = make(map[uint64][]byte, len(h.acked))
	for k, v := range h.acked {
		acked[k] = v
	}
	deleted = make(map[uint64]bool, len(h.delAcked))
	for k := range h.delAcked {
		deleted[k] = true
	}
	return acked, deleted
}

// TestPowerLoss crashes a memfs at random moments while writers append,
// overwrite and delete concurrently, then reopens the durable state: every
// acknowledged write must read back byte-identical (or be deleted by a
// delete that was at least attempted), every acknowledged delete must hold,
// and no needle that was never written whole may be visible.
func TestPowerLoss(t *testing.T) {
	iterations := 300
	if testing.Short() {
		iterations = 50
	}
	torn := 0
	for seed := range uint64(iterations) {
		if powerLossOnce(t, seed) {
			torn++
		}
		if t.Failed() {
			t.Fatalf("failed with seed %d", seed)
		}
	}
	t.Logf("%d of %d crashes hit an append in flight", torn, iterations)
	// The test is only meaningful if crashes hit appends in flight.
	if torn < iterations/20 {
		t.Fatalf("only %d of %d crashes hit an append in flight", torn, iterations)
	}
}

// powerLossOnce runs one seeded crash and reports whether recovery had to
// truncate a torn tail.
func powerLossOnce(t *testing.T, seed uint64) (torn bool) {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	m := newTestMemFS(t)
	h := &crashHistory{attempted: map[uint64][][]byte{}, acked: map[uint64][]byte{}, delTried: map[uint64]bool{}, delAcked: map[uint64]bool{}}
	const writers, ops = 4, 12
	// Odd seeds crash from inside the filesystem, at a random append or
	// fdatasync (often between an append and its fdatasync); even seeds
	// crash from outside at a random moment.
	var (
		opCount, crashAtOp int
		armed              atomic.Bool
		acked              map[uint64][]byte
		deleted            map[uint64]bool
		clone              *memfs.FS
	)
	if seed%2 == 1 {
		crashAtOp = 1 + rng.IntN(3*writers*ops/2)
	}
	var crashMu sync.Mutex // the writer (appends) and the syncer (fdatasyncs) both get here
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if crashAtOp > 0 && armed.Load() {
			crashMu.Lock()
			defer crashMu.Unlock()
			if opCount++; opCount == crashAtOp {
				acked, deleted = h.snapshot()
				clone = m.CrashClone(memfs.CrashOptions{Rand: rng})
			}
		}
		return nil
	})
	v, err := OpenVolume(errorfs.Wrap(m, inj), volTestDir, 1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	crashAfter := int64(rng.IntN(writers * ops))
	if crashAtOp > 0 {
		crashAfter = writers * ops // wait for the writers
	}
	var wg sync.WaitGroup
	var finished atomic.Int64
	for w := range writers {
		wr := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			defer finished.Add(1)
			for i := range ops {
				key := uint64(w*100 + wr.IntN(ops)) // overwrites within a writer
				if i > 2 && wr.IntN(5) == 0 {
					h.mu.Lock()
					h.delTried[key] = true
					h.mu.Unlock()
					if _, err := v.Delete(bgCtx, key, uint32(key)); err == nil {
						h.mu.Lock()
						h.delAcked[key] = true
						delete(h.acked, key)
						h.mu.Unlock()
					}
					continue
				}
				data := testPayload(wr.Uint64(), wr.IntN(3000))
				h.mu.Lock()
				h.attempted[key] = append(h.attempted[key], data)
				h.mu.Unlock()
				if err := v.Write(bgCtx, &Needle{Key: key, Cookie: uint32(key), Data: data}); err != nil {
					return // the volume was closed under us
				}
				h.mu.Lock()
				h.acked[key] = data
				delete(h.delAcked, key)
				h.mu.Unlock()
				h.ackedCount.Add(1)
			}
		})
	}
	for h.ackedCount.Load() < crashAfter && finished.Load() < writers {
		runtime.Gosched()
	}
	if crashAtOp == 0 {
		acked, deleted = h.snapshot()
		clone = m.CrashClone(memfs.CrashOptions{Rand: rng})
	}
	wg.Wait()
	v.Close()
	if clone == nil { // the writers finished first
		acked, deleted = h.snapshot()
		clone = m.CrashClone(memfs.CrashOptions{Rand: rng})
	}

	crashedSize := len(fileBytes(t, clone, datPath(1)))
	v, err = OpenVolume(clone, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatalf("seed %d: reopen after crash: %v", seed, err)
	}
	torn = v.Info().Size < uint64(crashedSize)
	defer v.Close()
	checkVolume(t, v)
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, want := range acked {
		n, err := v.Read(key, uint32(key))
		switch {
		case errors.Is(err, ErrDeleted) && h.delTried[key]:
		case err != nil:
			t.Errorf("seed %d: acknowledged needle %d: %v", seed, key, err)
		case !bytes.Equal(n.Data, want) && !wasWritten(h.attempted[key], n.Data):
			t.Errorf("seed %d: needle %d holds bytes never written", seed, key)
		}
	}
	for key := range deleted {
		n, err := v.Read(key, uint32(key))
		switch {
		case err == nil && !wasWritten(h.attempted[key], n.Data):
			t.Errorf("seed %d: deleted needle %d resurrected with unknown bytes", seed, key)
		case err != nil && !errors.Is(err, ErrDeleted):
			t.Errorf("seed %d: acknowledged delete of %d: %v", seed, key, err)
		}
	}
	for _, e := range v.Index() {
		if e.Deleted {
			continue
		}
		n, err := v.Read(e.Key, e.Cookie)
		if err != nil {
			t.Errorf("seed %d: indexed needle %d unreadable: %v", seed, e.Key, err)
			continue
		}
		if !wasWritten(h.attempted[e.Key], n.Data) {
			t.Errorf("seed %d: torn or unknown needle %d visible", seed, e.Key)
		}
	}
	// The recovered file takes appends and survives another clean reopen.
	mustWrite(t, v, 99999, 1, []byte("after recovery"))
	v.Close()
	v, err = OpenVolume(clone.CrashClone(memfs.CrashOptions{}), volTestDir, 1, "", "000")
	if err != nil {
		t.Fatalf("seed %d: second reopen: %v", seed, err)
	}
	defer v.Close()
	mustRead(t, v, 99999, 1, []byte("after recovery"))
	if in := v.Info(); in.DamagedBytes != 0 {
		t.Errorf("seed %d: recovery left damage: %+v", seed, in)
	}
	return torn
}

func wasWritten(attempts [][]byte, data []byte) bool {
	for _, a := range attempts {
		if bytes.Equal(a, data) {
			return true
		}
	}
	return false
}

// Opening a volume file with random bytes appended never panics, keeps every
// earlier needle, and leaves a file that takes appends.
func TestGarbageAppended(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 200 {
		garbage := make([]byte, rng.IntN(2000))
		for j := range garbage {
			garbage[j] = byte(rng.Uint32())
		}
		if i%4 == 0 && len(garbage) > 8 { // a plausible header start
			copy(garbage, EncodeRecord(&Needle{Key: 1, Data: testPayload(1, 64)})[:8])
		}
		openWithGarbage(t, garbage)
	}
}

func FuzzOpenWithGarbage(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("CRN1"))
	f.Add(EncodeRecord(&Needle{Key: 5, Cookie: 5, AppendNs: 1, Data: []byte("z")})[:45])
	f.Add(append(make([]byte, 13), EncodeRecord(&Needle{Key: 6, AppendNs: 1 << 62})...))
	f.Fuzz(func(t *testing.T, garbage []byte) { openWithGarbage(t, garbage) })
}

func openWithGarbage(t *testing.T, garbage []byte) {
	m := newTestMemFS(t)
	v, err := OpenVolume(m, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]*Needle{}
	for k := uint64(1); k <= 3; k++ {
		want[k] = mustWrite(t, v, k, 1, testPayload(k, int(k)*50))
	}
	size := v.Info().Size
	v.Close()
	patchFile(t, m, datPath(1), int64(size), garbage)
	v, err = OpenVolume(m, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatalf("open with %d garbage bytes: %v", len(garbage), err)
	}
	defer v.Close()
	for k, n := range want {
		got, err := v.Read(k, 1)
		if err == nil && bytes.Equal(got.Data, n.Data) {
			continue
		}
		// Only a complete valid record hidden in the garbage may supersede it.
		if e := v.Index(); !hasNewer(e, k, n.AppendNs) {
			t.Fatalf("needle %d lost to appended garbage: %v", k, err)
		}
	}
	mustWrite(t, v, 10, 1, []byte("append after garbage"))
	mustRead(t, v, 10, 1, []byte("append after garbage"))
}

func hasNewer(idx []IndexEntry, key, ns uint64) bool {
	for _, e := range idx {
		if e.Key == key && e.AppendNs > ns {
			return true
		}
	}
	return false
}
