package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/fuse"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// cairn mount --metrics-addr serves the mount's series under their fixed
// names (dashboards use them).
func TestMountMetricsAddr(t *testing.T) {
	addr, err := serveMetrics("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)), fuse.Collectors()...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	for _, name := range []string{"cairn_mount_cache_hits_total", "cairn_mount_cache_misses_total", "cairn_mount_dirty_bytes", "go_goroutines"} {
		if !strings.Contains(string(body), "\n"+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if _, err := serveMetrics("999.1.1.1:1", slog.Default()); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("bad address: %v, want an error naming --metrics-addr", err)
	}
}

// cairn mount-service --metrics-addr serves the same series, summed over
// the volumes it mounts, while it runs.
func TestMountServiceMetricsAddr(t *testing.T) {
	addr := testutil.LoopbackIP(t, 9328) + ":9328"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runMountService(ctx, []string{"--socket", filepath.Join(t.TempDir(), "mount.sock"),
			"--filer", "127.0.0.1:1", "--metrics-addr", addr}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("mount-service exited %d after its context ended", code)
		}
	}()
	testutil.WaitFor(t, 30*time.Second, "mount-service /metrics", func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "\ncairn_mount_dirty_bytes ") {
			return fmt.Errorf("/metrics has no cairn_mount_dirty_bytes")
		}
		return nil
	})
}
