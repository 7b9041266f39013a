package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-storage/cairn/fuse"
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
