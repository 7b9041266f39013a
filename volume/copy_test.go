package volume

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/internal/vfs/memfs"
)

// sourceBatches returns the records of every key of v (as ReadVolume sends
// them) in batches of n.
func sourceBatches(t *testing.T, v *Volume, n int) [][][]byte {
	t.Helper()
	var out [][][]byte
	var b [][]byte
	for _, e := range v.Index() {
		rec, err := v.ReadRecord(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, rec)
		if len(b) == n {
			out, b = append(out, b), nil
		}
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

func feed(batches [][][]byte, before func(i int)) func() ([][]byte, error) {
	i := 0
	return func() ([][]byte, error) {
		if before != nil {
			before(i)
		}
		if i == len(batches) {
			return nil, io.EOF
		}
		i++
		return batches[i-1], nil
	}
}

// TestCopyInCrashSafe copies a volume batch by batch and simulates a power
// loss before every batch: a store reopened from any of those states holds
// no volume and no leftover file. The finished copy survives a power loss
// and reads back byte-identical, tombstones included.
func TestCopyInCrashSafe(t *testing.T) {
	src := mustOpenVolume(t, newTestMemFS(t))
	rng := rand.New(rand.NewPCG(7, 7))
	want := map[uint64][]byte{}
	for k := uint64(1); k <= 60; k++ {
		want[k] = mustWrite(t, src, k, uint32(k), testPayload(k, 100+rng.IntN(5000))).Data
	}
	for k := uint64(1); k <= 60; k += 7 {
		if _, err := src.Delete(context.Background(), k, uint32(k)); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	batches := sourceBatches(t, src, 8)

	dst := newTestMemFS(t)
	st, err := OpenStore(dst, volTestDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var crashes []*memfs.FS
	v, records, size, err := st.CopyIn(context.Background(), 1, "", "000", feed(batches, func(int) {
		crashes = append(crashes, dst.CrashClone(memfs.CrashOptions{Rand: rng}))
	}))
	if err != nil {
		t.Fatal(err)
	}
	if records != 60 || size == 0 {
		t.Fatalf("copied %d records, %d bytes; want 60 records", records, size)
	}
	for i, c := range crashes {
		s2, err := OpenStore(c, volTestDir)
		if err != nil {
			t.Fatalf("reopen after a crash before batch %d: %v", i, err)
		}
		if n := len(s2.Volumes()); n != 0 {
			t.Errorf("crash before batch %d left %d volumes; an unfinished copy must not count", i, n)
		}
		if names, _ := c.ReadDir(volTestDir); len(names) != 0 {
			t.Errorf("crash before batch %d: files left after reopening: %v", i, names)
		}
		s2.Close()
	}
	check := func(v *Volume) {
		t.Helper()
		for k := uint64(1); k <= 60; k++ {
			n, err := v.Read(k, uint32(k))
			if d, ok := want[k]; ok {
				if err != nil || !bytes.Equal(n.Data, d) {
					t.Errorf("needle %d: %v", k, err)
				}
			} else if !errors.Is(err, ErrDeleted) {
				t.Errorf("needle %d was deleted on the source, reads %v on the copy", k, err)
			}
		}
	}
	check(v)
	s3, err := OpenStore(dst.CrashClone(memfs.CrashOptions{}), volTestDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	v3, ok := s3.Get(1)
	if !ok {
		t.Fatal("finished copy lost in a power loss")
	}
	check(v3)

	if _, _, _, err := st.CopyIn(context.Background(), 1, "", "000", feed(batches, nil)); !errors.Is(err, ErrExists) {
		t.Fatalf("copy over an existing volume: %v, want ErrExists", err)
	}
}

// TestCopyInRejectsCorruptRecord: one flipped bit in the stream abandons
// the copy and leaves nothing behind.
func TestCopyInRejectsCorruptRecord(t *testing.T) {
	src := mustOpenVolume(t, newTestMemFS(t))
	for k := uint64(1); k <= 10; k++ {
		mustWrite(t, src, k, 1, testPayload(k, 300))
	}
	batches := sourceBatches(t, src, 3)
	batches[2][1] = bytes.Clone(batches[2][1])
	batches[2][1][len(batches[2][1])/2] ^= 0x10

	dst := newTestMemFS(t)
	st, err := OpenStore(dst, volTestDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, _, _, err = st.CopyIn(context.Background(), 4, "pics", "001", feed(batches, nil))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "nothing kept") {
		t.Fatalf("corrupt stream: %v, want ErrCorrupt and nothing kept", err)
	}
	if _, ok := st.Get(4); ok {
		t.Fatal("abandoned copy is in the store")
	}
	if names, _ := dst.ReadDir(volTestDir); len(names) != 0 {
		t.Fatalf("abandoned copy left files: %v", names)
	}
	// A failed source stream is abandoned the same way.
	failing := func() ([][]byte, error) { return nil, errors.New("source went away") }
	if _, _, _, err := st.CopyIn(context.Background(), 4, "pics", "001", failing); err == nil {
		t.Fatal("copy from a failing source succeeded")
	}
	if names, _ := dst.ReadDir(volTestDir); len(names) != 0 {
		t.Fatalf("failed copy left files: %v", names)
	}
}
