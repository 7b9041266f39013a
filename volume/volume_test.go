package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cairn-storage/cairn/internal/testutil"
	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/errorfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
	"golang.org/x/sys/unix"
)

var bgCtx = context.Background()

func TestWriteReadRoundTrip(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	sizes := []int{0, 1, 7, 8, 40, 4096, 1 << 20}
	for i, size := range sizes {
		mustWrite(t, v, uint64(i+1), uint32(1000+i), testPayload(uint64(i), size))
	}
	for i, size := range sizes {
		mustRead(t, v, uint64(i+1), uint32(1000+i), testPayload(uint64(i), size))
	}
	if in := v.Info(); in.NeedleCount != uint64(len(sizes)) || in.ReadOnly || in.ID != 1 || in.Replication != "000" {
		t.Fatalf("Info = %+v", in)
	}
	v.Close()
	v2 := mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	for i, size := range sizes {
		mustRead(t, v2, uint64(i+1), uint32(1000+i), testPayload(uint64(i), size))
	}
}

func TestOSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenVolume(vfs.OS, dir, 3, "pics", "001")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, 1, 2, []byte("on a real disk"))
	v.Close()
	v, err = OpenVolume(vfs.OS, dir, 3, "pics", "001")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustRead(t, v, 1, 2, []byte("on a real disk"))
}

func TestReadErrors(t *testing.T) {
	v := mustOpenVolume(t, newTestMemFS(t))
	mustWrite(t, v, 1, 0xabc, []byte("x"))
	if _, err := v.Read(2, 0xabc); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := v.Read(1, 0xabd); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("wrong cookie: %v", err)
	}
	if _, err := v.ReadRecord(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadRecord missing: %v", err)
	}
	err := v.Write(bgCtx, &Needle{Key: 3, Data: make([]byte, MaxNeedleSize+1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if _, err := v.Read(3, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("too-large needle stored: %v", err)
	}
}

func TestOverwrite(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	first := mustWrite(t, v, 7, 1, []byte("first version"))
	second := mustWrite(t, v, 7, 2, []byte("second"))
	if second.AppendNs <= first.AppendNs {
		t.Fatalf("AppendNs not increasing: %d then %d", first.AppendNs, second.AppendNs)
	}
	mustRead(t, v, 7, 2, []byte("second"))
	if _, err := v.Read(7, 1); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("old cookie: %v", err)
	}
	in := v.Info()
	if in.NeedleCount != 1 || in.DeletedBytes != uint64(recordSize(formatCurrent, 13)) {
		t.Fatalf("Info after overwrite = %+v", in)
	}
	v.Close()
	v2 := mustOpenVolume(t, m)
	mustRead(t, v2, 7, 2, []byte("second"))
	if in := v2.Info(); in.DeletedBytes != uint64(recordSize(formatCurrent, 13)) {
		t.Fatalf("garbage not rebuilt on open: %+v", in)
	}
}

func TestDelete(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	n := mustWrite(t, v, 5, 9, []byte("doomed"))
	if _, err := v.Delete(bgCtx, 6, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	if _, err := v.Delete(bgCtx, 5, 8); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("delete wrong cookie: %v", err)
	}
	mustRead(t, v, 5, 9, []byte("doomed"))
	ns, err := v.Delete(bgCtx, 5, 9)
	if err != nil || ns <= n.AppendNs {
		t.Fatalf("Delete = %d, %v (write was at %d)", ns, err, n.AppendNs)
	}
	if _, err := v.Read(5, 9); !errors.Is(err, ErrDeleted) {
		t.Fatalf("read deleted: %v", err)
	}
	if _, err := v.Delete(bgCtx, 5, 9); !errors.Is(err, ErrDeleted) {
		t.Fatalf("delete twice: %v", err)
	}
	rec, err := v.ReadRecord(5)
	if err != nil {
		t.Fatal(err)
	}
	if tomb, _ := DecodeRecord(rec); !tomb.Deleted || tomb.AppendNs != ns {
		t.Fatalf("ReadRecord of deleted = %+v", tomb)
	}
	idx := v.Index()
	if len(idx) != 1 || !idx[0].Deleted || idx[0].AppendNs != ns || idx[0].Cookie != 9 {
		t.Fatalf("Index = %+v", idx)
	}
	v.Close()
	v2 := mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	if _, err := v2.Read(5, 9); !errors.Is(err, ErrDeleted) {
		t.Fatalf("after reopen: %v", err)
	}
	if in := v2.Info(); in.DeletedCount != 1 || in.NeedleCount != 0 {
		t.Fatalf("Info = %+v", in)
	}
}

func TestAppendNs(t *testing.T) {
	v := mustOpenVolume(t, newTestMemFS(t))
	explicit := mustWrite(t, v, 1, 1, nil)
	last := explicit.AppendNs
	for i := range 20 {
		n := mustWrite(t, v, uint64(i+2), 1, []byte("x"))
		if n.AppendNs <= last {
			t.Fatalf("AppendNs %d after %d", n.AppendNs, last)
		}
		last = n.AppendNs
	}
	future := uint64(time.Now().Add(time.Hour).UnixNano())
	n := &Needle{Key: 100, AppendNs: future, Data: []byte("y")}
	if err := v.Write(bgCtx, n); err != nil || n.AppendNs != future {
		t.Fatalf("explicit AppendNs: %d, %v", n.AppendNs, err)
	}
	if n := mustWrite(t, v, 101, 1, nil); n.AppendNs != future+1 {
		t.Fatalf("after a future AppendNs got %d, want %d", n.AppendNs, future+1)
	}
}

// The higher AppendNs wins; on a tie the later record in the file wins.
func TestMergeRule(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	rec := func(ns uint64, data string) []byte {
		return EncodeRecord(&Needle{Key: 1, Cookie: 1, AppendNs: ns, Data: []byte(data)})
	}
	for _, r := range [][]byte{rec(100, "new"), rec(50, "older, arrives late"), rec(100, "repair copy")} {
		if err := v.WriteRecord(bgCtx, r); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, v, 1, 1, []byte("repair copy"))
	v.Close()
	v = mustOpenVolume(t, m)
	mustRead(t, v, 1, 1, []byte("repair copy"))
	if err := v.WriteRecord(bgCtx, rec(101, "newest")[:40]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated record accepted: %v", err)
	}
	mustRead(t, v, 1, 1, []byte("repair copy"))
}

// slowSync delays every sync so that concurrent writers pile up.
type slowSync struct {
	d     time.Duration
	syncs atomic.Int64
}

func (s *slowSync) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpSync && strings.HasSuffix(op.Path, extData) {
		s.syncs.Add(1)
		time.Sleep(s.d)
	}
	return nil
}

func TestGroupCommitBatches(t *testing.T) {
	inj := &slowSync{d: 2 * time.Millisecond}
	v := mustOpenVolume(t, errorfs.Wrap(newTestMemFS(t), inj))
	var batches []int
	var bmu sync.Mutex
	v.SetBatchObserver(func(n int) { bmu.Lock(); batches = append(batches, n); bmu.Unlock() })
	const writers, each = 32, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := uint64(w*each + i + 1)
				if err := v.Write(bgCtx, &Needle{Key: key, Cookie: 1, Data: testPayload(key, 100)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	syncs, batched := v.Stats()
	if batched != writers*each {
		t.Fatalf("batched writes %d, want %d", batched, writers*each)
	}
	if syncs >= batched/4 {
		t.Fatalf("%d syncs for %d writes: group commit does not batch", syncs, batched)
	}
	if uint64(inj.syncs.Load()) != syncs {
		t.Fatalf("Stats says %d syncs, the file saw %d", syncs, inj.syncs.Load())
	}
	total := 0
	for _, b := range batches {
		total += b
	}
	if total != writers*each || len(batches) != int(syncs) {
		t.Fatalf("observer saw %d batches totalling %d", len(batches), total)
	}
	for key := uint64(1); key <= writers*each; key++ {
		mustRead(t, v, key, 1, testPayload(key, 100))
	}
}

// blockSync holds syncs until released.
type blockSync struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockSync) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpSync && b.armed.Load() {
		b.entered <- struct{}{}
		<-b.release
	}
	return nil
}

func TestNotVisibleBeforeSync(t *testing.T) {
	inj := &blockSync{entered: make(chan struct{}), release: make(chan struct{})}
	v := mustOpenVolume(t, errorfs.Wrap(newTestMemFS(t), inj))
	inj.armed.Store(true)
	done := make(chan error)
	go func() { done <- v.Write(bgCtx, &Needle{Key: 1, Cookie: 1, Data: []byte("x")}) }()
	<-inj.entered
	if _, err := v.Read(1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("needle visible before its sync: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Write returned before its sync: %v", err)
	default:
	}
	inj.armed.Store(false)
	close(inj.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustRead(t, v, 1, 1, []byte("x"))
}

func TestContextCanceledBeforeHandoff(t *testing.T) {
	v := mustOpenVolume(t, newTestMemFS(t))
	c, cancel := context.WithCancel(bgCtx)
	cancel()
	if err := v.Write(c, &Needle{Key: 1, Data: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with canceled bgCtx: %v", err)
	}
	if _, err := v.Read(1, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("canceled write stored: %v", err)
	}
}

func TestCRCFlipThenRepair(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	mustWrite(t, v, 1, 1, []byte("neighbour"))
	n := mustWrite(t, v, 2, 2, []byte("precious bytes"))
	good := EncodeRecord(n) // what a healthy replica holds
	patchFile(t, m, datPath(1), dataStart(v, 2)+3, []byte{'X'})

	if _, err := v.Read(2, 2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of flipped needle: %v", err)
	}
	if _, err := v.ReadRecord(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadRecord of flipped needle: %v", err)
	}
	if bad, err := v.Verify(bgCtx); err != nil || len(bad) != 1 || bad[0] != 2 {
		t.Fatalf("Verify = %v, %v", bad, err)
	}
	if v.Info().CorruptCount != 1 {
		t.Fatalf("Info = %+v", v.Info())
	}
	mustRead(t, v, 1, 1, []byte("neighbour"))
	v.Close()

	v = mustOpenVolume(t, m)
	if _, err := v.Read(2, 2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("after reopen: %v", err)
	}
	if bad, _ := v.Verify(bgCtx); len(bad) != 1 {
		t.Fatalf("Verify after reopen = %v", bad)
	}
	if err := v.WriteRecord(bgCtx, good); err != nil {
		t.Fatal(err)
	}
	mustRead(t, v, 2, 2, []byte("precious bytes"))
	if bad, _ := v.Verify(bgCtx); len(bad) != 0 {
		t.Fatalf("Verify after repair = %v", bad)
	}
	v.Close()
	v = mustOpenVolume(t, m)
	mustRead(t, v, 2, 2, []byte("precious bytes"))
	if v.Info().CorruptCount != 0 {
		t.Fatalf("corrupt count after repair: %+v", v.Info())
	}
}

func TestTornTailTruncated(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	for i := range 5 {
		mustWrite(t, v, uint64(i), 1, testPayload(uint64(i), 300))
	}
	size := v.Info().Size
	v.Close()
	torn := EncodeRecord(&Needle{Key: 99, Cookie: 1, AppendNs: 1 << 62, Data: testPayload(99, 500)})
	for _, cut := range []int{3, 39, 40, 41, 300, len(torn) - 1} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			c := m.CrashClone(memfs.CrashOptions{})
			patchFile(t, c, datPath(1), int64(size), torn[:cut])
			v := mustOpenVolume(t, c)
			if got := v.Info().Size; got != size {
				t.Fatalf("size after recovery %d, want %d", got, size)
			}
			if got := len(fileBytes(t, c, datPath(1))); uint64(got) != size {
				t.Fatalf("file not truncated: %d bytes", got)
			}
			if _, err := v.Read(99, 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("torn needle visible: %v", err)
			}
			mustWrite(t, v, 6, 1, []byte("after"))
			v.Close()
			v = mustOpenVolume(t, c.CrashClone(memfs.CrashOptions{}))
			for i := range 5 {
				mustRead(t, v, uint64(i), 1, testPayload(uint64(i), 300))
			}
			mustRead(t, v, 6, 1, []byte("after"))
		})
	}
}

func TestMidFileCorruptionSkipped(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	mustWrite(t, v, 1, 1, testPayload(1, 100))
	mustWrite(t, v, 2, 1, testPayload(2, 5000))
	mustWrite(t, v, 3, 1, testPayload(3, 100))
	off2 := v.mu.index[2].off
	size := v.Info().Size
	v.Close()
	patchFile(t, m, datPath(1), off2+1, []byte("garbage!")) // smash magic and header CRC

	v = mustOpenVolume(t, m)
	mustRead(t, v, 1, 1, testPayload(1, 100))
	mustRead(t, v, 3, 1, testPayload(3, 100))
	if _, err := v.Read(2, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("damaged needle: %v", err)
	}
	in := v.Info()
	if in.Size != size || in.DamagedBytes != uint64(recordSize(formatCurrent, 5000)) || in.ReadOnly {
		t.Fatalf("Info = %+v (size before %d)", in, size)
	}
	mustWrite(t, v, 4, 1, []byte("still writable"))
	v.Close()
	v = mustOpenVolume(t, m)
	mustRead(t, v, 3, 1, testPayload(3, 100))
	mustRead(t, v, 4, 1, []byte("still writable"))
}

func TestFailedSyncTurnsReadOnly(t *testing.T) {
	m := newTestMemFS(t)
	sw := errorfs.NewSwitch(".dat", errorfs.OpSync)
	v := mustOpenVolume(t, errorfs.Wrap(m, sw))
	mustWrite(t, v, 1, 1, []byte("before"))
	sw.Arm(errorfs.ErrIO)
	var wg sync.WaitGroup
	var succeeded atomic.Int64
	for i := range 16 {
		wg.Go(func() {
			if err := v.Write(bgCtx, &Needle{Key: uint64(100 + i), Data: []byte("lost?")}); err == nil {
				succeeded.Add(1)
			}
		})
	}
	wg.Wait()
	if succeeded.Load() != 0 || sw.Hits() != 1 {
		t.Fatalf("%d writes succeeded across %d failed syncs", succeeded.Load(), sw.Hits())
	}
	sw.Disarm()
	in := v.Info()
	if !in.ReadOnly || in.Err == "" {
		t.Fatalf("Info after failed sync = %+v", in)
	}
	v.ClearReadOnly() // must not revive a volume after a failed fsync
	if err := v.Write(bgCtx, &Needle{Key: 200, Data: []byte("x")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after failed sync: %v", err)
	}
	if _, err := v.Delete(bgCtx, 1, 1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("delete after failed sync: %v", err)
	}
	if _, _, err := v.Vacuum(bgCtx); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("vacuum after failed sync: %v", err)
	}
	if sw.Hits() != 1 {
		t.Fatalf("the failed sync was retried: %d", sw.Hits())
	}
	for i := range 16 {
		if _, err := v.Read(uint64(100+i), 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unacknowledged needle visible: %v", err)
		}
	}
	mustRead(t, v, 1, 1, []byte("before"))
	v.Close()
	v = mustOpenVolume(t, m)
	mustWrite(t, v, 300, 1, []byte("after reopen"))
	mustRead(t, v, 1, 1, []byte("before"))
}

func TestOperatorReadOnly(t *testing.T) {
	v := mustOpenVolume(t, newTestMemFS(t))
	v.SetReadOnly("disk replacement")
	err := v.Write(bgCtx, &Needle{Key: 1, Data: []byte("x")})
	if !errors.Is(err, ErrReadOnly) || !bytes.Contains([]byte(err.Error()), []byte("disk replacement")) {
		t.Fatalf("write on read-only: %v", err)
	}
	if in := v.Info(); !in.ReadOnly || in.ReadOnlyReason != "disk replacement" {
		t.Fatalf("Info = %+v", in)
	}
	v.ClearReadOnly()
	mustWrite(t, v, 1, 1, []byte("x"))
}

func TestNoSpace(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	var acked []uint64
	m.SetCapacity(superblockSize + 20*recordSize(formatCurrent, 1000) + headerSize - 1)
	var err error
	for key := uint64(1); key < 100; key++ {
		if err = v.Write(bgCtx, &Needle{Key: key, Cookie: 1, Data: testPayload(key, 1000)}); err != nil {
			break
		}
		acked = append(acked, key)
	}
	if !errors.Is(err, ErrNoSpace) || len(acked) != 20 {
		t.Fatalf("after %d writes: %v, want ErrNoSpace after 20", len(acked), err)
	}
	in := v.Info()
	if in.ReadOnly || in.Size != uint64(len(fileBytes(t, m, datPath(1)))) {
		t.Fatalf("Info %+v, file %d bytes", in, len(fileBytes(t, m, datPath(1))))
	}
	if _, err := v.Delete(bgCtx, 1, 1); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("delete on a full disk: %v", err)
	}
	for _, key := range acked {
		mustRead(t, v, key, 1, testPayload(key, 1000))
	}
	m.SetCapacity(0)
	mustWrite(t, v, 1000, 1, []byte("space again"))
	v.Close()
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	for _, key := range acked {
		mustRead(t, v, key, 1, testPayload(key, 1000))
	}
	mustRead(t, v, 1000, 1, []byte("space again"))
	if v.Info().DamagedBytes != 0 {
		t.Fatalf("failed appends left damage: %+v", v.Info())
	}
}

func TestShortWriteRolledBack(t *testing.T) {
	m := newTestMemFS(t)
	var fail atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpWrite && fail.Load() {
			return errorfs.ShortWrite(op.Len / 2)
		}
		return nil
	})
	v := mustOpenVolume(t, errorfs.Wrap(m, inj))
	mustWrite(t, v, 1, 1, []byte("first"))
	fail.Store(true)
	err := v.Write(bgCtx, &Needle{Key: 2, Data: testPayload(2, 3000)})
	if err == nil || errors.Is(err, ErrNoSpace) {
		t.Fatalf("short write: %v", err)
	}
	fail.Store(false)
	mustWrite(t, v, 3, 1, []byte("third"))
	v.Close()
	v = mustOpenVolume(t, m)
	mustRead(t, v, 1, 1, []byte("first"))
	mustRead(t, v, 3, 1, []byte("third"))
	if _, err := v.Read(2, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("short-written needle: %v", err)
	}
	if in := v.Info(); in.DamagedBytes != 0 || in.NeedleCount != 2 {
		t.Fatalf("Info = %+v", in)
	}
}

func TestFailedRollbackTurnsReadOnly(t *testing.T) {
	m := newTestMemFS(t)
	sw := errorfs.NewSwitch(".dat", errorfs.OpWrite, errorfs.OpTruncate)
	v := mustOpenVolume(t, errorfs.Wrap(m, sw))
	sw.Arm(errorfs.ErrNoSpace)
	if err := v.Write(bgCtx, &Needle{Key: 1, Data: []byte("x")}); err == nil {
		t.Fatal("write succeeded")
	}
	sw.Disarm()
	if err := v.Write(bgCtx, &Needle{Key: 2, Data: []byte("x")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after failed rollback: %v", err)
	}
}

func TestCloseAndDestroy(t *testing.T) {
	m := newTestMemFS(t)
	v, err := OpenVolume(m, volTestDir, 1, "", "")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, 1, 1, []byte("x"))
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := v.Write(bgCtx, &Needle{Key: 2}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := v.Read(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	v, err = OpenVolume(m, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CrashClone(memfs.CrashOptions{}).Stat(datPath(1)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("destroyed volume file survives a crash: %v", err)
	}
}

func TestOpenChecksSuperblock(t *testing.T) {
	m := newTestMemFS(t)
	v, err := OpenVolume(m, volTestDir, 1, "", "001")
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := OpenVolume(m, volTestDir, 1, "", "002"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("replication mismatch: %v", err)
	}
	if _, err := OpenVolume(m, volTestDir, 1, "bad name", "001"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad collection: %v", err)
	}
	if _, err := OpenVolume(m, volTestDir, 1, "", "1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad replication: %v", err)
	}
	patchFile(t, m, datPath(1), 9, []byte{0xff})
	if _, err := OpenVolume(m, volTestDir, 1, "", "001"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt superblock: %v", err)
	}
}

// Creating a volume is crash-safe: a crash before any step leaves either no
// volume file or a complete one.
func TestCreateCrashAtEachStep(t *testing.T) {
	for step := 1; ; step++ {
		m := newTestMemFS(t)
		var n int
		var clone *memfs.FS
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if n++; n == step {
				clone = m.CrashClone(memfs.CrashOptions{})
			}
			return nil
		})
		v, err := OpenVolume(errorfs.Wrap(m, inj), volTestDir, 1, "c", "000")
		if err != nil {
			t.Fatal(err)
		}
		v.Close()
		if clone == nil {
			if step < 4 {
				t.Fatalf("creation took only %d operations", step-1)
			}
			return
		}
		names, _ := clone.ReadDir(volTestDir)
		v, err = OpenVolume(clone, volTestDir, 1, "c", "000")
		if err != nil {
			t.Fatalf("step %d (files %v): %v", step, names, err)
		}
		mustWrite(t, v, 1, 1, []byte("x"))
		v.Close()
		if names, _ := clone.ReadDir(volTestDir); len(names) != 1 || names[0] != "c_1.dat" {
			t.Fatalf("step %d: files after reopen %v", step, names)
		}
	}
}

// Writes racing with Close either succeed durably or fail with ErrClosed;
// none hangs.
func TestCloseDuringWrites(t *testing.T) {
	m := newTestMemFS(t)
	v, err := OpenVolume(m, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok []uint64
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				key := uint64(w*1000 + i)
				err := v.Write(bgCtx, &Needle{Key: key, Data: testPayload(key, 64)})
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("write racing Close: %v", err)
					}
					return
				}
				mu.Lock()
				ok = append(ok, key)
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	for _, key := range ok {
		mustRead(t, v, key, 0, testPayload(key, 64))
	}
}

// The replica path: ReadRecord on one volume, WriteRecord on another,
// needles and tombstones alike, keeps AppendNs and bytes.
func TestReplicateRecords(t *testing.T) {
	primary := mustOpenVolume(t, newTestMemFS(t))
	replica := mustOpenVolume(t, newTestMemFS(t))
	n := mustWrite(t, primary, 1, 7, []byte("replicated"))
	mustWrite(t, primary, 2, 8, []byte("to be deleted"))
	delNs, err := primary.Delete(bgCtx, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []uint64{1, 2} {
		rec, err := primary.ReadRecord(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := replica.WriteRecord(bgCtx, rec); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, replica, 1, 7, []byte("replicated"))
	if _, err := replica.Read(2, 8); !errors.Is(err, ErrDeleted) {
		t.Fatalf("replicated tombstone: %v", err)
	}
	idx := replica.Index()
	if len(idx) != 2 || idx[0].AppendNs != n.AppendNs || idx[1].AppendNs != delNs || !idx[1].Deleted {
		t.Fatalf("replica index %+v", idx)
	}
	if pi := primary.Index(); pi[0] != idx[0] || pi[1] != idx[1] {
		t.Fatalf("indexes differ: %+v vs %+v", pi, idx)
	}
}

// TestSyncedWritesLeaveThePageCache: once a write is durable, its pages
// are dropped from the page cache (readers cache what they read; see
// docs/storage-core.md), and the needle still reads back whole.
func TestSyncedWritesLeaveThePageCache(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenVolume(vfs.OS, dir, 3, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	data := testPayload(7, 4<<20)
	mustWrite(t, v, 1, 2, data)
	f, err := os.Open(v.path(extData))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	pages := (len(m) + os.Getpagesize() - 1) / os.Getpagesize()
	vec := make([]byte, pages)
	// The pages are dropped just after the write is acknowledged. The
	// superblock and the page the record shares with it may stay.
	testutil.WaitFor(t, 10*time.Second, "the written pages to leave the page cache", func() error {
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
			return errno
		}
		resident := 0
		for _, b := range vec {
			resident += int(b & 1)
		}
		if resident > 2 {
			return fmt.Errorf("%d of the volume file's %d pages are in the page cache", resident, pages)
		}
		return nil
	})
	mustRead(t, v, 1, 2, data)
}
