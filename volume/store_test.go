package volume

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

func mustOpenStore(t *testing.T, fsys vfs.FS, dir string) *Store {
	t.Helper()
	s, err := OpenStore(fsys, dir)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() {
		for _, v := range s.Volumes() {
			checkVolume(t, v)
		}
		s.Close()
	})
	return s
}

func TestStoreAllocateAndReopen(t *testing.T) {
	m := memfs.New()
	s := mustOpenStore(t, m, "/srv/vol") // created, parents durable
	if _, err := s.Allocate(3, "pics", "001"); err != nil {
		t.Fatal(err)
	}
	v1, err := s.Allocate(1, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(2, "logs_x", "000"); err != nil {
		t.Fatal(err)
	}
	again, err := s.Allocate(1, "", "000")
	if err != nil || again != v1 {
		t.Fatalf("Allocate not idempotent: %v %v", again == v1, err)
	}
	if _, err := s.Allocate(1, "other", "000"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Allocate with another collection: %v", err)
	}
	if _, err := s.Allocate(1, "", "002"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Allocate with another replication: %v", err)
	}
	if _, err := s.Allocate(9, "no/slash", "000"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Allocate with a bad collection: %v", err)
	}
	mustWrite(t, v1, 10, 1, []byte("in the store"))
	var ids []uint32
	for _, v := range s.Volumes() {
		ids = append(ids, v.ID())
	}
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 2 || ids[2] != 3 {
		t.Fatalf("Volumes = %v", ids)
	}
	s.Close()
	if _, err := s.Allocate(4, "", "000"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allocate after Close: %v", err)
	}

	s2 := mustOpenStore(t, m.CrashClone(memfs.CrashOptions{}), "/srv/vol")
	if len(s2.Volumes()) != 3 {
		t.Fatalf("reopened store has %d volumes", len(s2.Volumes()))
	}
	v, ok := s2.Get(3)
	if !ok || v.Info().Collection != "pics" || v.Info().Replication != "001" {
		t.Fatalf("volume 3 after reopen: %+v", v.Info())
	}
	v, _ = s2.Get(1)
	mustRead(t, v, 10, 1, []byte("in the store"))
	if v, _ := s2.Get(2); v.Info().Collection != "logs_x" {
		t.Fatalf("collection with underscore: %+v", v.Info())
	}
}

func TestStoreDelete(t *testing.T) {
	m := memfs.New()
	s := mustOpenStore(t, m, "/d")
	if _, err := s.Allocate(1, "c", "000"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, ok := s.Get(1); ok {
		t.Fatal("deleted volume still listed")
	}
	s2 := mustOpenStore(t, m.CrashClone(memfs.CrashOptions{}), "/d")
	if len(s2.Volumes()) != 0 {
		t.Fatal("deleted volume came back after a crash")
	}
}

func TestStoreRefusesBrokenVolume(t *testing.T) {
	m := newTestMemFS(t)
	s := mustOpenStore(t, m, volTestDir)
	if _, err := s.Allocate(1, "", "000"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	patchFile(t, m, datPath(1), 0, []byte("JUNK"))
	_, err := OpenStore(m, volTestDir)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), datPath(1)) {
		t.Fatalf("OpenStore with a broken volume: %v", err)
	}
}

func TestStoreRefusesMisnamedAndDuplicateVolumes(t *testing.T) {
	for _, name := range []string{"x_.dat", "0001.dat"} {
		m := newTestMemFS(t)
		f, _ := m.OpenFile(volTestDir+"/"+name, os.O_CREATE|os.O_RDWR, 0o644)
		f.Close()
		if _, err := OpenStore(m, volTestDir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	m := newTestMemFS(t)
	v, _ := OpenVolume(m, volTestDir, 5, "a", "000")
	v.Close()
	v, _ = OpenVolume(m, volTestDir, 5, "b", "000")
	v.Close()
	if _, err := OpenStore(m, volTestDir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "both hold volume 5") {
		t.Fatalf("duplicate ids: %v", err)
	}
}

func TestStoreLeftoversAndStrangers(t *testing.T) {
	m := newTestMemFS(t)
	v, _ := OpenVolume(m, volTestDir, 1, "", "000")
	mustWrite(t, v, 1, 1, []byte("x"))
	v.Close()
	for _, name := range []string{"1.cpd", "7.cpd", "c_8.tmp", "README"} {
		f, _ := m.OpenFile(volTestDir+"/"+name, os.O_CREATE|os.O_RDWR, 0o644)
		f.WriteAt([]byte("partial"), 0)
		f.Close()
	}
	s := mustOpenStore(t, m, volTestDir)
	if len(s.Volumes()) != 1 {
		t.Fatalf("%d volumes", len(s.Volumes()))
	}
	v, _ = s.Get(1)
	mustRead(t, v, 1, 1, []byte("x"))
	names, _ := m.CrashClone(memfs.CrashOptions{}).ReadDir(volTestDir)
	if strings.Join(names, ",") != "1.dat,README" {
		t.Fatalf("files after open (durably): %v", names)
	}
}

func TestStoreFreeBytes(t *testing.T) {
	m := newTestMemFS(t)
	m.SetCapacity(1 << 20)
	s := mustOpenStore(t, m, volTestDir)
	v, err := s.Allocate(1, "", "000")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, 1, 1, make([]byte, 1000))
	free, err := s.FreeBytes()
	if want := uint64(1<<20) - v.Info().Size; err != nil || free != want {
		t.Fatalf("FreeBytes = %d, %v; want %d", free, err, want)
	}
}
