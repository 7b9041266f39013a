package volume

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/errorfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

// vacuumFixture writes live, overwritten, deleted and corrupt needles.
// Expected state: keys 1..10 live with testPayload(key+100, 500) (overwritten
// once), 11..15 deleted, 16 corrupt.
func vacuumFixture(t *testing.T, v *Volume, m vfs.FS) {
	t.Helper()
	for k := uint64(1); k <= 16; k++ {
		mustWrite(t, v, k, uint32(k), testPayload(k, 500))
	}
	for k := uint64(1); k <= 10; k++ {
		mustWrite(t, v, k, uint32(k), testPayload(k+100, 500))
	}
	for k := uint64(11); k <= 15; k++ {
		if _, err := v.Delete(bgCtx, k, uint32(k)); err != nil {
			t.Fatal(err)
		}
	}
	patchFile(t, m, datPath(1), dataStart(v, 16), []byte("rot"))
}

func checkVacuumFixture(t *testing.T, v *Volume) {
	t.Helper()
	for k := uint64(1); k <= 10; k++ {
		mustRead(t, v, k, uint32(k), testPayload(k+100, 500))
	}
	for k := uint64(11); k <= 15; k++ {
		if _, err := v.Read(k, uint32(k)); !errors.Is(err, ErrDeleted) {
			t.Fatalf("deleted key %d: %v", k, err)
		}
	}
	if _, err := v.Read(16, 16); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt key: %v", err)
	}
}

func TestVacuum(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	vacuumFixture(t, v, m)
	garbage := v.Info().DeletedBytes
	before, after, err := v.Vacuum(bgCtx)
	if err != nil {
		t.Fatal(err)
	}
	if before-after != garbage || after != uint64(len(fileBytes(t, m, datPath(1)))) {
		t.Fatalf("Vacuum %d -> %d, garbage was %d, file is %d", before, after, garbage, len(fileBytes(t, m, datPath(1))))
	}
	checkVacuumFixture(t, v)
	if in := v.Info(); in.DeletedBytes != 0 || in.NeedleCount != 11 || in.DeletedCount != 5 || in.Size != after {
		t.Fatalf("Info after vacuum = %+v", in)
	}
	mustWrite(t, v, 50, 1, []byte("after vacuum"))
	v.Close()
	v = mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{}))
	checkVacuumFixture(t, v)
	mustRead(t, v, 50, 1, []byte("after vacuum"))
	if names, _ := m.ReadDir(volTestDir); len(names) != 1 {
		t.Fatalf("files after vacuum: %v", names)
	}
}

// A crash before any filesystem operation of Vacuum leaves a volume that
// opens with all its data, and no leftover files.
func TestVacuumCrashAtEachStep(t *testing.T) {
	for step := 1; ; step++ {
		m := newTestMemFS(t)
		v, err := OpenVolume(m, volTestDir, 1, "", "000")
		if err != nil {
			t.Fatal(err)
		}
		vacuumFixture(t, v, m)
		v.Close()

		var n int
		var armed bool
		var clone *memfs.FS
		rng := rand.New(rand.NewPCG(uint64(step), 1))
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if !armed {
				return nil
			}
			if n++; n == step {
				clone = m.CrashClone(memfs.CrashOptions{Rand: rng})
			}
			return nil
		})
		ef := errorfs.Wrap(m, inj)
		v, err = OpenVolume(ef, volTestDir, 1, "", "000")
		if err != nil {
			t.Fatal(err)
		}
		armed = true // count only the vacuum's operations; the writer sees this via Vacuum's hand-off
		if _, _, err := v.Vacuum(bgCtx); err != nil {
			t.Fatal(err)
		}
		v.Close()
		last := clone == nil
		if last { // crash after Vacuum returned
			if step < 5 {
				t.Fatalf("vacuum took only %d operations", step-1)
			}
			clone = m.CrashClone(memfs.CrashOptions{Rand: rng})
		}
		v, err = OpenVolume(clone, volTestDir, 1, "", "000")
		if err != nil {
			t.Fatalf("step %d: reopen: %v", step, err)
		}
		checkVacuumFixture(t, v)
		if names, _ := clone.ReadDir(volTestDir); len(names) != 1 || names[0] != "1.dat" {
			t.Fatalf("step %d: files %v", step, names)
		}
		if last && v.Info().DeletedBytes != 0 {
			t.Fatalf("after a completed vacuum the old file came back: %+v", v.Info())
		}
		v.Close()
		if last {
			return
		}
	}
}

func TestVacuumFailureLeavesVolumeUnchanged(t *testing.T) {
	for _, kind := range []errorfs.OpKind{errorfs.OpWrite, errorfs.OpSync, errorfs.OpRename} {
		t.Run(kind.String(), func(t *testing.T) {
			m := newTestMemFS(t)
			sw := errorfs.NewSwitch(extCompact, kind)
			v := mustOpenVolume(t, errorfs.Wrap(m, sw))
			vacuumFixture(t, v, m)
			sw.Arm(errorfs.ErrIO)
			if _, _, err := v.Vacuum(bgCtx); err == nil {
				t.Fatal("vacuum succeeded")
			}
			sw.Disarm()
			checkVacuumFixture(t, v)
			if v.Info().ReadOnly {
				t.Fatal("failed vacuum made the volume read-only")
			}
			mustWrite(t, v, 77, 1, []byte("x"))
			if names, _ := m.ReadDir(volTestDir); len(names) != 1 {
				t.Fatalf("leftover files %v", names)
			}
		})
	}
}

func TestVacuumFailedDirSyncTurnsReadOnly(t *testing.T) {
	m := newTestMemFS(t)
	sw := errorfs.NewSwitch(volTestDir, errorfs.OpSyncDir)
	v := mustOpenVolume(t, errorfs.Wrap(m, sw))
	vacuumFixture(t, v, m)
	sw.Arm(errorfs.ErrIO)
	if _, _, err := v.Vacuum(bgCtx); err == nil {
		t.Fatal("vacuum succeeded")
	}
	sw.Disarm()
	checkVacuumFixture(t, v)
	if err := v.Write(bgCtx, &Needle{Key: 99}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after unsynced rename: %v", err)
	}
}

func TestVacuumConcurrentWrites(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	vacuumFixture(t, v, m)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				key := uint64(1000 + w*100 + i)
				if err := v.Write(bgCtx, &Needle{Key: key, Cookie: 1, Data: testPayload(key, 200)}); err != nil {
					t.Error(err)
				}
				if _, err := v.Read(1, 1); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range 3 {
		if _, _, err := v.Vacuum(bgCtx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	check := func(v *Volume) {
		checkVacuumFixture(t, v)
		for w := range 4 {
			for i := range 25 {
				key := uint64(1000 + w*100 + i)
				mustRead(t, v, key, 1, testPayload(key, 200))
			}
		}
	}
	check(v)
	v.Close()
	check(mustOpenVolume(t, m.CrashClone(memfs.CrashOptions{})))
}

func TestVacuumCanceled(t *testing.T) {
	m := newTestMemFS(t)
	v := mustOpenVolume(t, m)
	vacuumFixture(t, v, m)
	c, cancel := context.WithCancel(bgCtx)
	cancel()
	if _, _, err := v.Vacuum(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled vacuum: %v", err)
	}
	checkVacuumFixture(t, v)
}
