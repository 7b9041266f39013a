package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// fsyncRecLen is the size of one record of TestMountKilledUnderFsync.
const fsyncRecLen = 4096

// fsyncRecord is record i of writer w: a header (writer, index, CRC of
// the rest) and bytes derived from both.
func fsyncRecord(w, i int) []byte {
	b := make([]byte, fsyncRecLen)
	binary.LittleEndian.PutUint32(b[0:], uint32(w))
	binary.LittleEndian.PutUint32(b[4:], uint32(i))
	for k := 12; k < len(b); k++ {
		b[k] = byte(w*31 + i*7 + k)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[12:]))
	return b
}

// fsyncWriter writes record after record at its offset, each followed by
// fsync, starting at record from, until an error or stop. acked is the
// number of records whose fsync returned 0 (records 0..acked-1).
type fsyncWriter struct {
	acked atomic.Int64
	err   error // the first error, set when done is closed
	done  chan struct{}
}

func startFsyncWriter(path string, w, from int, stop <-chan struct{}) *fsyncWriter {
	fw := &fsyncWriter{done: make(chan struct{})}
	fw.acked.Store(int64(from))
	go func() {
		defer close(fw.done)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			fw.err = fmt.Errorf("open: %w", err)
			return
		}
		defer f.Close()
		for i := from; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.WriteAt(fsyncRecord(w, i), int64(i)*fsyncRecLen); err != nil {
				fw.err = fmt.Errorf("write of record %d: %w", i, err)
				return
			}
			if err := f.Sync(); err != nil {
				fw.err = fmt.Errorf("fsync of record %d: %w", i, err)
				return
			}
			fw.acked.Store(int64(i + 1))
		}
	}()
	return fw
}

// verifyFsyncRecords checks that records 0..n-1 of writer w are intact.
func verifyFsyncRecords(t *testing.T, path string, w, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s after the mount restarted: %v", path, err)
	}
	if len(data) < n*fsyncRecLen {
		t.Fatalf("%s: %d bytes after the restart, but %d records of %d bytes were fsynced", path, len(data), n, fsyncRecLen)
	}
	bad := 0
	for i := range n {
		if got := data[i*fsyncRecLen : (i+1)*fsyncRecLen]; !bytes.Equal(got, fsyncRecord(w, i)) {
			bad++
			if bad <= 5 {
				t.Errorf("%s: fsynced record %d lost or corrupt (header %x)", path, i, got[:12])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d fsynced records lost or corrupt", path, bad, n)
	}
}

// TestMountKilledUnderFsync: writers do write+fsync of records in a loop
// while the `cairn mount` process is SIGKILLed. Each writer must get an
// error (ENOTCONN, ECONNABORTED or EIO), never silence; once the dead
// mount is cleaned up and the mount started again, every record whose
// fsync returned 0 is there, byte for byte. Four kill cycles, the writers
// resuming after their last acknowledged record each time.
func TestMountKilledUnderFsync(t *testing.T) {
	needApps(t, "fuse3")
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	checkFilerStateAtEnd(t, c)
	m := startAppMount(t, c)
	const writers = 4
	acked := make([]int, writers)
	for cycle := range 4 {
		stop := make(chan struct{})
		var fws []*fsyncWriter
		for w := range writers {
			fws = append(fws, startFsyncWriter(filepath.Join(m.Point, fmt.Sprintf("rec%d", w)), w, acked[w], stop))
		}
		// Let every writer get some fsyncs acknowledged, then kill the
		// mount while they are inside write or fsync.
		testutil.WaitFor(t, 60*time.Second, "every writer to fsync 50 more records", func() error {
			for w, fw := range fws {
				select {
				case <-fw.done:
					return fmt.Errorf("writer %d stopped before the kill: %v", w, fw.err)
				default:
				}
				if got := int(fw.acked.Load()) - acked[w]; got < 50 {
					return fmt.Errorf("writer %d: %d records fsynced", w, got)
				}
			}
			return nil
		})
		m.Kill()
		var wg sync.WaitGroup
		for w, fw := range fws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-fw.done:
				case <-time.After(60 * time.Second):
					close(stop)
					t.Errorf("cycle %d writer %d: no error 60s after the mount was killed", cycle, w)
					<-fw.done
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for w, fw := range fws {
			if fw.err == nil {
				t.Fatalf("cycle %d writer %d: stopped without an error after the mount was killed", cycle, w)
			}
			if !isDeadMountErr(fw.err) {
				t.Fatalf("cycle %d writer %d: %v, want ENOTCONN, ECONNABORTED or EIO", cycle, w, fw.err)
			}
			acked[w] = int(fw.acked.Load())
		}
		t.Logf("cycle %d: mount killed; writers saw %v; fsynced records per writer %v", cycle, fws[0].err, acked)
		appRemount(t, m)
		for w := range writers {
			verifyFsyncRecords(t, filepath.Join(m.Point, fmt.Sprintf("rec%d", w)), w, acked[w])
		}
	}
}

// fuseMountsAt counts the FUSE mounts stacked at dir.
func fuseMountsAt(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		// id parent major:minor root mountpoint options ... - fstype source ...
		if len(f) > 8 && f[4] == dir {
			for i, x := range f {
				if x == "-" && i+1 < len(f) && strings.HasPrefix(f[i+1], "fuse") {
					n++
				}
			}
		}
	}
	return n
}

// TestMountRestartsOverDeadMount: `cairn mount` started again right after
// its predecessor was SIGKILLed, with nobody cleaning up, replaces the dead
// FUSE mount at its mount point (DESIGN: a dead mount is lazily unmounted
// first) instead of failing or stacking a new mount on top of the dead
// one, and serves the files written before.
func TestMountRestartsOverDeadMount(t *testing.T) {
	needApps(t, "fuse3")
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	checkFilerStateAtEnd(t, c)
	m := startAppMount(t, c)
	t.Cleanup(func() {
		// Peel off every layer, stacked dead mounts included.
		m.Kill()
		for range 5 {
			if fuseMountsAt(t, m.Point) == 0 {
				break
			}
			appRun(30*time.Second, "fusermount3", "-u", "-z", m.Point)
		}
	})
	for i := range 3 {
		p := filepath.Join(m.Point, fmt.Sprintf("f%d", i))
		want := bytes.Repeat([]byte{byte('a' + i)}, 10000)
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		// The kernel caches the root's attributes for a second: a restart
		// within that window must still see that the old mount is dead.
		if _, err := os.Stat(m.Point); err != nil {
			t.Fatal(err)
		}
		m.Kill()
		m.Start(t)
		m.WaitMounted(t)
		if n := fuseMountsAt(t, m.Point); n != 1 {
			t.Fatalf("restart %d: %d FUSE mounts stacked at %s, want 1", i, n, m.Point)
		}
		for k := 0; k <= i; k++ {
			got, err := os.ReadFile(filepath.Join(m.Point, fmt.Sprintf("f%d", k)))
			if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + k)}, 10000)) {
				t.Fatalf("restart %d: f%d after the restart: %v (%d bytes)", i, k, err, len(got))
			}
		}
	}
}
