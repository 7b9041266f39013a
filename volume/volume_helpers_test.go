package volume

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs"
	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

const volTestDir = "/data"

// newMemFS returns a memfs with volTestDir created durably.
func newTestMemFS(t testing.TB) *memfs.FS {
	t.Helper()
	m := memfs.New()
	if err := m.MkdirAll(volTestDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	return m
}

// mustOpen opens volume 1 of the default collection and closes it at cleanup
// after checking its consistency.
func mustOpenVolume(t testing.TB, fsys vfs.FS) *Volume {
	t.Helper()
	v, err := OpenVolume(fsys, volTestDir, 1, "", "000")
	if err != nil {
		t.Fatalf("OpenVolume: %v", err)
	}
	t.Cleanup(func() {
		checkVolume(t, v)
		v.Close()
	})
	return v
}

// checkVolume asserts that every indexed needle reads back with the CRC of
// its index entry, or reports ErrCorrupt, and that the counters agree.
func checkVolume(t testing.TB, v *Volume) {
	t.Helper()
	v.mu.RLock()
	closed := v.mu.file == nil
	v.mu.RUnlock()
	if closed {
		return
	}
	var live, tombs uint64
	for _, e := range v.Index() {
		if e.Deleted {
			tombs++
			if _, err := v.Read(e.Key, e.Cookie); !errors.Is(err, ErrDeleted) {
				t.Errorf("check: tombstoned key %d reads %v", e.Key, err)
			}
			continue
		}
		live++
		n, err := v.Read(e.Key, e.Cookie)
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			t.Errorf("check: key %d: %v", e.Key, err)
			continue
		}
		if crc32c(n.Data) != e.CRC || uint32(len(n.Data)) != e.Size || n.AppendNs != e.AppendNs {
			t.Errorf("check: key %d read does not match its index entry", e.Key)
		}
	}
	in := v.Info()
	if in.NeedleCount != live || in.DeletedCount != tombs {
		t.Errorf("check: Info counts %d live %d deleted, index has %d and %d", in.NeedleCount, in.DeletedCount, live, tombs)
	}
}

func mustWrite(t testing.TB, v *Volume, key uint64, cookie uint32, data []byte) *Needle {
	t.Helper()
	n := &Needle{Key: key, Cookie: cookie, Data: data}
	if err := v.Write(context.Background(), n); err != nil {
		t.Fatalf("Write %d: %v", key, err)
	}
	return n
}

func mustRead(t testing.TB, v *Volume, key uint64, cookie uint32, want []byte) {
	t.Helper()
	n, err := v.Read(key, cookie)
	if err != nil {
		t.Fatalf("Read %d: %v", key, err)
	}
	if !bytes.Equal(n.Data, want) {
		t.Fatalf("Read %d: %d bytes differ from the %d written", key, len(n.Data), len(want))
	}
	if n.Key != key || n.Cookie != cookie {
		t.Fatalf("Read %d: got key %d cookie %x", key, n.Key, n.Cookie)
	}
}

// fileBytes returns the content of name.
func fileBytes(t testing.TB, fsys vfs.FS, name string) []byte {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// patchFile writes b at off of name, durably.
func patchFile(t testing.TB, fsys vfs.FS, name string, off int64, b []byte) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// dataStart is the file offset of the data of key's latest record in v.
func dataStart(v *Volume, key uint64) int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	e := v.mu.index[key]
	return e.off + e.format.dataOffset(e.dataLen)
}

func datPath(id uint32) string { return volTestDir + "/" + fileBase("", id) + extData }

// payload returns deterministic bytes for key.
func testPayload(key uint64, n int) []byte {
	b := make([]byte, n)
	x := key*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}
