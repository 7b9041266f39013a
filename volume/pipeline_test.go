package volume

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/internal/vfs/errorfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

// syncGate holds every fdatasync of a volume file while armed, until the
// test lets it return (with the error it is given), and reports the
// appends and fdatasyncs it sees.
type syncGate struct {
	armed   atomic.Bool
	writes  chan errorfs.Op // every append while armed
	entered chan struct{}   // a sync began and is held
	release chan error      // what a held sync returns
	syncs   atomic.Int64    // syncs seen while armed
	others  atomic.Int64    // operations on other files while armed
	truncs  atomic.Int64    // truncations while armed
	// failWrite makes the next append a short write.
	failWrite atomic.Bool
}

// openGated opens volume 1 on m behind a disarmed syncGate, without the
// hold of small batches. At cleanup, before the volume closes, the gate
// lets every sync through.
func openGated(t *testing.T, m *memfs.FS) (*syncGate, *Volume) {
	g := &syncGate{writes: make(chan errorfs.Op, 100), entered: make(chan struct{}, 100), release: make(chan error)}
	v := mustOpenVolume(t, errorfs.Wrap(m, g))
	v.holdBytes = 0 // every batch is appended at once, small ones too
	t.Cleanup(func() {
		g.armed.Store(false)
		close(g.release)
	})
	return g, v
}

func (g *syncGate) MaybeError(op errorfs.Op) error {
	if !g.armed.Load() {
		return nil
	}
	if !strings.HasSuffix(op.Path, extData) {
		g.others.Add(1)
		return nil
	}
	switch op.Kind {
	case errorfs.OpWrite:
		select {
		case g.writes <- op:
		default: // a test that lost count failed already
		}
		if g.failWrite.CompareAndSwap(true, false) {
			return errorfs.ShortWrite(op.Len / 2)
		}
	case errorfs.OpTruncate:
		g.truncs.Add(1)
	case errorfs.OpSync:
		g.syncs.Add(1)
		g.entered <- struct{}{}
		return <-g.release
	}
	return nil
}

// wait receives from ch, failing the test if nothing comes for a long
// time (the volume would have hung).
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case x := <-ch:
		return x
	case <-time.After(time.Minute):
		t.Fatalf("no %s within a minute", what)
		panic("unreachable")
	}
}

// goWrite writes key in a goroutine; the channel gets Write's result.
func goWrite(v *Volume, key uint64, cookie uint32, data string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- v.Write(bgCtx, &Needle{Key: key, Cookie: cookie, Data: []byte(data)}) }()
	return ch
}

// writerWaits waits until v's writer goroutine blocks, for room in the
// pipeline or for it to drain.
func writerWaits(t *testing.T, v *Volume) {
	t.Helper()
	testutil.WaitFor(t, time.Minute, "the writer to wait for the syncer", func() error {
		v.pipe.mu.Lock()
		defer v.pipe.mu.Unlock()
		if !v.pipe.writerWaits {
			return errors.New("the writer does not wait")
		}
		return nil
	})
}

// refused runs op, which must fail with want without appending anything.
func refused(t *testing.T, g *syncGate, what string, want error, op func() error) {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- op() }()
	select {
	case err := <-ch:
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	case <-g.writes:
		t.Fatalf("%s: accepted and appended, want %v", what, want)
	}
}

type delResult struct {
	ns  uint64
	err error
}

func pending(ch <-chan error) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// A batch is acknowledged, indexed and counted in the volume's size only
// after an fdatasync that began after it was written; the writer appends
// the next batch while the previous one syncs.
func TestPipelineAcksOnlyAfterAFollowingSync(t *testing.T) {
	g, v := openGated(t, newTestMemFS(t))
	mustWrite(t, v, 10, 1, []byte("earlier"))
	before := v.Info().Size
	g.armed.Store(true)

	a := goWrite(v, 1, 1, "batch a")
	wait(t, g.writes, "append of a")
	wait(t, g.entered, "fdatasync of a")
	b := goWrite(v, 2, 2, "batch b")
	wait(t, g.writes, "append of b while a syncs") // the writer runs ahead
	if !pending(a) || !pending(b) {
		t.Fatal("a write was acknowledged while its fdatasync was held")
	}
	for key := uint64(1); key <= 2; key++ {
		if _, err := v.Read(key, uint32(key)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("needle %d readable before its sync: %v", key, err)
		}
		if _, err := v.ReadRecord(key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("record %d readable before its sync: %v", key, err)
		}
	}
	if in := v.Info(); in.Size != before || in.NeedleCount != 1 {
		t.Fatalf("Info counts unsynced bytes: %+v, size before %d", in, before)
	}

	g.release <- nil // a's sync returns; it began before b was written
	if err := wait(t, a, "acknowledgement of a"); err != nil {
		t.Fatal(err)
	}
	mustRead(t, v, 1, 1, []byte("batch a"))
	select {
	case <-g.entered: // b's own sync
	case err := <-b:
		t.Fatalf("b acknowledged (%v) by a sync that began before it was written", err)
	}
	if _, err := v.Read(2, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b readable before its own sync returned: %v", err)
	}
	g.release <- nil
	if err := wait(t, b, "acknowledgement of b"); err != nil {
		t.Fatal(err)
	}
	g.armed.Store(false)
	mustRead(t, v, 2, 2, []byte("batch b"))
	if in := v.Info(); in.Size != before+2*uint64(recordSize(formatCurrent, 7)) || in.NeedleCount != 3 {
		t.Fatalf("Info after both syncs: %+v", in)
	}
	if syncs, records := v.Stats(); syncs != 3 || records != 3 {
		t.Fatalf("Stats = %d syncs, %d records; want 3, 3", syncs, records)
	}
}

// A failed fdatasync fails every request written since the last good one,
// including those written while it ran, without syncing again; the volume
// turns read-only and writes nothing more; nothing acknowledged is lost.
func TestPipelineFailedSyncFailsEveryUnsyncedBatch(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	for key := uint64(1); key <= 3; key++ {
		mustWrite(t, v, key, 1, testPayload(key, 500))
	}
	g.armed.Store(true)
	a := goWrite(v, 10, 1, "a")
	wait(t, g.writes, "append of a")
	wait(t, g.entered, "fdatasync of a")
	b := goWrite(v, 11, 1, "b")
	wait(t, g.writes, "append of b")
	c := goWrite(v, 12, 1, "c")
	wait(t, g.writes, "append of c")

	g.release <- errorfs.ErrIO
	for name, ch := range map[string]<-chan error{"a": a, "b": b, "c": c} {
		select {
		case err := <-ch:
			if err == nil {
				t.Fatalf("write %s acknowledged after the fdatasync failed", name)
			}
		case <-g.entered:
			t.Fatalf("fdatasync retried after a failure, for %s", name)
		}
	}
	if n := g.syncs.Load(); n != 1 {
		t.Fatalf("%d fdatasyncs after the failure, want the 1 that failed", n)
	}
	in := v.Info()
	if !in.ReadOnly || !strings.Contains(in.Err, "fdatasync") {
		t.Fatalf("Info after a failed fdatasync: %+v", in)
	}
	if err := v.Write(bgCtx, &Needle{Key: 13, Data: []byte("d")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after a failed fdatasync: %v", err)
	}
	select {
	case op := <-g.writes:
		t.Fatalf("the writer appended after a failed fdatasync: %+v", op)
	default:
	}
	for key := uint64(10); key <= 13; key++ {
		if _, err := v.Read(key, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unacknowledged needle %d visible: %v", key, err)
		}
	}
	g.armed.Store(false)
	v.Close()

	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	for key := uint64(1); key <= 3; key++ {
		mustRead(t, v, key, 1, testPayload(key, 500))
	}
	mustWrite(t, v, 20, 1, []byte("after reopen"))
}

// Deletes, overwrites and replica records staged while earlier batches
// wait for their fdatasync are checked against those batches, as against
// the index, and append times keep increasing across them.
func TestPipelineStagesAgainstUnsyncedBatches(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	mustWrite(t, v, 5, 5, []byte("old"))
	ancient := EncodeRecord(&Needle{Key: 5, Cookie: 5, AppendNs: 1, Data: []byte("ancient")})
	g.armed.Store(true)

	over := make(chan error, 1)
	n5 := &Needle{Key: 5, Cookie: 55, Data: []byte("new")}
	go func() { over <- v.Write(bgCtx, n5) }()
	wait(t, g.writes, "append of the overwrite")
	wait(t, g.entered, "fdatasync of the overwrite") // held from here on
	add := make(chan error, 1)
	n6 := &Needle{Key: 6, Cookie: 6, Data: []byte("six")}
	go func() { add <- v.Write(bgCtx, n6) }()
	wait(t, g.writes, "append of needle 6")

	refused(t, g, "delete with the cookie the unsynced overwrite replaced", ErrCookieMismatch,
		func() error { _, err := v.Delete(bgCtx, 5, 5); return err })
	refused(t, g, "delete of a key never written", ErrNotFound,
		func() error { _, err := v.Delete(bgCtx, 7, 7); return err })
	del := make(chan delResult, 1)
	go func() { ns, err := v.Delete(bgCtx, 6, 6); del <- delResult{ns, err} }()
	wait(t, g.writes, "append of the tombstone of 6") // 6 exists only unsynced
	refused(t, g, "second delete of 6 while its tombstone is unsynced", ErrDeleted,
		func() error { _, err := v.Delete(bgCtx, 6, 6); return err })
	old := make(chan error, 1)
	go func() { old <- v.WriteRecord(bgCtx, ancient) }()
	wait(t, g.writes, "append of the ancient record of 5")
	if _, err := v.Read(5, 5); err != nil {
		t.Fatalf("the synced needle 5 must read until the overwrite syncs: %v", err)
	}
	// A replica's record from the future, then a delete that must win over
	// it: its append time follows the unsynced one.
	futureNs := uint64(time.Now().Add(time.Hour).UnixNano())
	future := make(chan error, 1)
	go func() {
		future <- v.WriteRecord(bgCtx, EncodeRecord(&Needle{Key: 8, Cookie: 8, AppendNs: futureNs, Data: []byte("future")}))
	}()
	wait(t, g.writes, "append of the record of 8")
	del8 := make(chan delResult, 1)
	go func() { ns, err := v.Delete(bgCtx, 8, 8); del8 <- delResult{ns, err} }()
	wait(t, g.writes, "append of the tombstone of 8")

	g.armed.Store(false)
	g.release <- nil
	for name, ch := range map[string]<-chan error{"overwrite": over, "write of 6": add, "ancient record": old, "record of 8": future} {
		if err := wait(t, ch, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	d := wait(t, del, "delete of 6")
	if d.err != nil {
		t.Fatalf("delete of 6: %v", d.err)
	}
	if !(n5.AppendNs < n6.AppendNs && n6.AppendNs < d.ns) {
		t.Fatalf("append times %d, %d, %d do not increase", n5.AppendNs, n6.AppendNs, d.ns)
	}
	if d8 := wait(t, del8, "delete of 8"); d8.err != nil || d8.ns <= futureNs {
		t.Fatalf("delete of 8 = %d, %v; want an append time after %d", d8.ns, d8.err, futureNs)
	}
	check := func(v *Volume) {
		t.Helper()
		mustRead(t, v, 5, 55, []byte("new")) // the ancient record lost the merge
		for _, key := range []uint64{6, 8} {
			if _, err := v.Read(key, uint32(key)); !errors.Is(err, ErrDeleted) {
				t.Fatalf("needle %d after its delete: %v", key, err)
			}
		}
		if in := v.Info(); in.NeedleCount != 1 || in.DeletedCount != 2 {
			t.Fatalf("Info = %+v", in)
		}
	}
	check(v)
	v.Close()
	check(mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{})))
}

// The writer stops appending while maxUnsyncedBatches batches wait for
// their fdatasync, and hands-off wait meanwhile.
func TestPipelineBoundsTheRunAhead(t *testing.T) {
	g, v := openGated(t, newTestMemFS(t))
	g.armed.Store(true)
	var results []<-chan error
	for i := range maxUnsyncedBatches {
		results = append(results, goWrite(v, uint64(i+1), 1, "x"))
		wait(t, g.writes, "append")
		if i == 0 {
			wait(t, g.entered, "fdatasync of the first batch")
		}
	}
	taken := goWrite(v, 100, 1, "taken, not written")
	writerWaits(t, v) // it took the write and waits for room
	ctx, cancel := context.WithTimeout(bgCtx, 200*time.Millisecond)
	defer cancel()
	refused := make(chan error, 1)
	go func() { refused <- v.Write(ctx, &Needle{Key: 101, Data: []byte("y")}) }()
	select {
	case op := <-g.writes:
		t.Fatalf("appended with %d batches unsynced: %+v", maxUnsyncedBatches, op)
	case err := <-refused:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write while the writer waits for room: %v", err)
		}
	}
	g.armed.Store(false)
	g.release <- nil
	for _, ch := range append(results, taken) {
		if err := wait(t, ch, "acknowledgement"); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, v, 100, 1, []byte("taken, not written"))
}

// Vacuum waits for the batches in flight, which are acknowledged and
// compacted.
func TestPipelineVacuumDrains(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	mustWrite(t, v, 1, 1, []byte("one"))
	if _, err := v.Delete(bgCtx, 1, 1); err != nil {
		t.Fatal(err)
	}
	g.armed.Store(true)
	a := goWrite(v, 2, 1, "two")
	wait(t, g.writes, "append of 2")
	wait(t, g.entered, "fdatasync of 2")
	vac := make(chan error, 1)
	go func() { _, _, err := v.Vacuum(bgCtx); vac <- err }()
	writerWaits(t, v) // the vacuum is handed over and waits for the batch
	if !pending(vac) || g.others.Load() != 0 {
		t.Fatalf("vacuum ran (%d operations on other files) while a batch was unsynced", g.others.Load())
	}
	g.armed.Store(false)
	g.release <- nil
	if err := wait(t, a, "acknowledgement of 2"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, vac, "vacuum"); err != nil {
		t.Fatal(err)
	}
	mustRead(t, v, 2, 1, []byte("two"))
	if in := v.Info(); in.Size != uint64(superblockSize+recordSize(formatCurrent, 0)+recordSize(formatCurrent, 3)) {
		t.Fatalf("Info after vacuum: %+v", in)
	}
	mustWrite(t, v, 3, 1, []byte("three")) // appends at the end of the new file
	v.Close()
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	mustRead(t, v, 2, 1, []byte("two"))
	mustRead(t, v, 3, 1, []byte("three"))
}

// Close waits for the batches in flight, which are acknowledged and
// durable.
func TestPipelineCloseDrains(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	g.armed.Store(true)
	b := goWrite(v, 4, 1, "four")
	wait(t, g.writes, "append of 4")
	wait(t, g.entered, "fdatasync of 4")
	closed := make(chan error, 1)
	go func() { closed <- v.Close() }()
	testutil.WaitFor(t, time.Minute, "the writer to stop", func() error {
		v.pipe.mu.Lock()
		defer v.pipe.mu.Unlock()
		if !v.pipe.stopping {
			return errors.New("still running")
		}
		return nil
	})
	if !pending(closed) {
		t.Fatal("Close returned while a batch was unsynced")
	}
	g.armed.Store(false)
	g.release <- nil
	if err := wait(t, b, "acknowledgement of 4"); err != nil {
		t.Fatalf("write in flight at Close: %v", err)
	}
	if err := wait(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	mustRead(t, v, 4, 1, []byte("four"))
}

// While a sync runs, a small batch is not appended: it waits for the sync
// (to go to the next one whole) or until it grows to holdBytes, and is
// then appended with the requests that made it grow.
func TestPipelineHoldsSmallBatches(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	v.holdBytes = holdBytes
	g.armed.Store(true)
	a := goWrite(v, 1, 1, "a")
	wait(t, g.writes, "append of a")
	wait(t, g.entered, "fdatasync of a")
	b := goWrite(v, 2, 1, "small b")
	writerWaits(t, v) // it took b and holds it
	select {
	case op := <-g.writes:
		t.Fatalf("small batch appended while a sync ran: %+v", op)
	default:
	}
	big := string(testPayload(3, holdBytes))
	c := goWrite(v, 3, 1, big)
	op := wait(t, g.writes, "append of b and c")
	if want := recordSize(formatCurrent, 7) + recordSize(formatCurrent, holdBytes); int64(op.Len) != want {
		t.Fatalf("appended %d bytes while a sync ran, want b and c together (%d)", op.Len, want)
	}
	g.armed.Store(false)
	g.release <- nil
	for name, ch := range map[string]<-chan error{"a": a, "b": b, "c": c} {
		if err := wait(t, ch, "acknowledgement of "+name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	mustRead(t, v, 2, 1, []byte("small b"))
	mustRead(t, v, 3, 1, []byte(big))
}

// A failed append waits until the batches before it are synced and
// acknowledged, then truncates the file back to where it began; the
// volume stays writable and keeps every acknowledged write.
func TestPipelineFailedAppendRollsBackAfterEarlierBatches(t *testing.T) {
	m := newTestMemFS(t)
	g, v := openGated(t, m)
	g.armed.Store(true)
	a := goWrite(v, 1, 1, "a")
	wait(t, g.writes, "append of a")
	wait(t, g.entered, "fdatasync of a")
	g.failWrite.Store(true)
	b := goWrite(v, 2, 1, string(testPayload(2, 3000)))
	wait(t, g.writes, "failing append of b")
	writerWaits(t, v) // for a's batch, before undoing b's
	if !pending(a) || !pending(b) || g.truncs.Load() != 0 {
		t.Fatalf("b rolled back (%d truncations) before a's sync returned", g.truncs.Load())
	}
	g.release <- nil
	wait(t, g.entered, "fdatasync after truncating b")
	if err := wait(t, a, "acknowledgement of a"); err != nil {
		t.Fatalf("a: %v", err)
	}
	if n := g.truncs.Load(); n != 1 {
		t.Fatalf("%d truncations, want 1", n)
	}
	g.armed.Store(false)
	g.release <- nil
	if err := wait(t, b, "failure of b"); err == nil || errors.Is(err, ErrNoSpace) {
		t.Fatalf("short append of b: %v", err)
	}
	mustWrite(t, v, 3, 1, []byte("c"))
	if in := v.Info(); in.ReadOnly || in.Size != uint64(len(fileBytes(t, m, datPath(1)))) {
		t.Fatalf("Info %+v, file %d bytes", in, len(fileBytes(t, m, datPath(1))))
	}
	v.Close()
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	mustRead(t, v, 1, 1, []byte("a"))
	mustRead(t, v, 3, 1, []byte("c"))
	if _, err := v.Read(2, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rolled-back needle: %v", err)
	}
	if in := v.Info(); in.DamagedBytes != 0 || in.NeedleCount != 2 {
		t.Fatalf("Info after reopen: %+v", in)
	}
}
