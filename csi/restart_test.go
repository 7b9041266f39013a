package csi_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/cairn-storage/cairn/csi"
	"github.com/cairn-storage/cairn/csi/csitest"
	"github.com/cairn-storage/cairn/csi/mountsvc"
)

const recordSize = 4096

// writer appends numbered records to a file, fsyncing every 8, until
// stopped. It remembers the first error.
type writer struct {
	path string
	stop chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex // guards n and err
	n      int        // records written
	synced int        // records known durable
	err    error
}

func startWriter(t *testing.T, path string) *writer {
	w, err := newWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newWriter(path string) (*writer, error) {
	w := &writer{path: path, stop: make(chan struct{})}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer f.Close()
		rec := make([]byte, recordSize)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				if err := f.Sync(); err != nil {
					w.fail(fmt.Errorf("final fsync: %w", err))
				}
				return
			default:
			}
			binary.LittleEndian.PutUint64(rec, uint64(i))
			copy(rec[8:], fmt.Sprintf(" record %d", i))
			if _, err := f.Write(rec); err != nil {
				w.fail(fmt.Errorf("write of record %d: %w", i, err))
				return
			}
			w.mu.Lock()
			w.n++
			w.mu.Unlock()
			if i%8 == 7 {
				if err := f.Sync(); err != nil {
					w.fail(fmt.Errorf("fsync after record %d: %w", i, err))
					return
				}
				w.mu.Lock()
				w.synced = i + 1
				w.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w, nil
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// finish stops the writer and checks that every record is in the file.
func (w *writer) finish(t *testing.T, readPath string) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	if w.err != nil {
		t.Fatalf("writer saw an I/O error: %v", w.err)
	}
	checkRecords(t, readPath, w.n)
}

// checkRecords checks that path holds exactly records 0..n-1.
func checkRecords(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != n*recordSize {
		t.Fatalf("file has %d bytes, want %d records of %d", len(b), n, recordSize)
	}
	for i := 0; i < n; i++ {
		if got := binary.LittleEndian.Uint64(b[i*recordSize:]); got != uint64(i) {
			t.Fatalf("record %d holds number %d", i, got)
		}
	}
	t.Logf("writer wrote and read back %d records", n)
}

func waitRecords(t *testing.T, w *writer, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("writer made no progress: %d records", w.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodePluginRestart: SIGKILL the node plugin (a `cairn csi` process)
// while an application writes to a published volume, and start it again.
// The writer sees no error, and the new plugin serves the existing mount.
func TestNodePluginRestart(t *testing.T) {
	env := csitest.Start(t)
	env.StartCSIProcess(t, csi.ModeMonolith)
	createVolume(t, env, "busy", 256<<20, nil)
	staging, target := publish(t, env, "busy")
	w := startWriter(t, filepath.Join(target, "log"))
	waitRecords(t, w, 50)

	env.RestartCSIProcess(t, syscall.SIGKILL)
	before := w.count()
	waitRecords(t, w, before+100)

	ctx := ctxT(t)
	h, err := env.Node().NodeGetVolumeHealth(ctx, &csipb.NodeGetVolumeHealthRequest{VolumeId: "busy", VolumePublishPath: target})
	if err != nil || len(h.VolumeHealth.GetHealthStatuses()) != 0 {
		t.Fatalf("NodeGetVolumeHealth after the restart = %v, %v; want healthy", h, err)
	}
	st, err := env.Node().NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "busy", VolumePath: target, StagingTargetPath: staging})
	if err != nil || len(st.Usage) != 2 || st.Usage[0].Used <= 0 || st.Usage[0].Total != 256<<20 {
		t.Fatalf("NodeGetVolumeStats after the restart = %v, %v", st, err)
	}
	w.finish(t, filepath.Join(target, "log"))
	unpublish(t, env, "busy", staging, target)
	mounts, err := mountsvc.NewClient(env.MountSocket).List(ctx)
	if err != nil || len(mounts) != 0 {
		t.Fatalf("mount service still hosts %v (%v) after unstaging", mounts, err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target path still there after unpublishing: %v", err)
	}
}

// TestMountServiceRestart records what a restart of the mount service
// does today (docs/csi.md): the staging mount comes back from the state
// file with every fsynced byte, while bind mounts made from the old FUSE
// connection stay dead (ENOTCONN) until the volume is published again;
// NodeGetVolumeHealth reports that. Both SIGTERM (flushes first) and
// SIGKILL.
func TestMountServiceRestart(t *testing.T) {
	env := csitest.Start(t)
	env.StartCSI(t)
	createVolume(t, env, "db", 0, nil)
	staging, target := publish(t, env, "db")
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		name := fmt.Sprintf("data-%d", i)
		writeFile(t, filepath.Join(target, name), []byte("fsynced before the restart"))

		env.RestartMountService(t, sig)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		mounts, err := mountsvc.NewClient(env.MountSocket).List(ctx)
		cancel()
		if err != nil || len(mounts) != 1 || !mounts[0].Alive || mounts[0].Dir != staging {
			t.Fatalf("%v: mount service after restart hosts %v (%v), want the staging mount", sig, mounts, err)
		}
		if got := readFile(t, filepath.Join(staging, name)); got != "fsynced before the restart" {
			t.Fatalf("%v: staging reads %q after the restart", sig, got)
		}
		if _, err := os.Stat(filepath.Join(target, name)); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("%v: the old bind mount gives %v; docs/csi.md says ENOTCONN until republished", sig, err)
		}
		h, err := env.Node().NodeGetVolumeHealth(ctxT(t), &csipb.NodeGetVolumeHealthRequest{VolumeId: "db", VolumePublishPath: target})
		if err != nil || len(h.VolumeHealth.GetHealthStatuses()) != 1 || h.VolumeHealth.HealthStatuses[0].Reason != "TransportEndpointNotConnected" {
			t.Fatalf("%v: NodeGetVolumeHealth of the dead target = %v, %v; want TransportEndpointNotConnected", sig, h, err)
		}
		if _, err := env.Node().NodeUnpublishVolume(ctxT(t), &csipb.NodeUnpublishVolumeRequest{VolumeId: "db", TargetPath: target}); err != nil {
			t.Fatalf("%v: NodeUnpublishVolume of the dead target: %v", sig, err)
		}
		if _, err := env.Node().NodePublishVolume(ctxT(t), &csipb.NodePublishVolumeRequest{VolumeId: "db", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwCap}); err != nil {
			t.Fatalf("%v: NodePublishVolume again: %v", sig, err)
		}
		if got := readFile(t, filepath.Join(target, name)); got != "fsynced before the restart" {
			t.Fatalf("%v: republished target reads %q", sig, got)
		}
	}
	unpublish(t, env, "db", staging, target)
}
