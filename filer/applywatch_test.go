package filer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// TestStuckApplyIsReported: a state machine stuck on one log entry (as an
// endless loop in a command's apply left it) is reported by /readyz, the
// log and a metric, and clears once the entry is applied.
func TestStuckApplyIsReported(t *testing.T) {
	var logs testutil.SyncBuffer
	n := startNodeCfg(t, filer.Config{ApplyStuckAfter: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	release := make(chan struct{})
	var once sync.Once
	var stuckAt atomic.Uint64
	filer.SetBeforeApply(n.filer, func(index uint64) {
		once.Do(func() {
			stuckAt.Store(index)
			<-release
		})
	})
	done := make(chan error, 1)
	go func() {
		_, err := n.client.Apply(context.Background(), &filer.Mkdir{Parent: filer.RootIno, Name: "after-the-stall", Mode: 0o755})
		done <- err
	}()
	readyz := func() (int, string) {
		resp, err := http.Get(n.url + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testutil.WaitFor(t, 30*time.Second, "/readyz to report the stuck apply", func() error {
		if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "has not finished after") {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})
	testutil.WaitFor(t, 30*time.Second, "the log to report the stuck apply", func() error {
		if !strings.Contains(logs.String(), "applying a Raft log entry has not finished") ||
			!strings.Contains(logs.String(), fmt.Sprintf("index=%d", stuckAt.Load())) {
			return errors.New("not logged yet")
		}
		return nil
	})
	_, body := n.do(t, http.MethodGet, "/metrics", "", nil)
	if !strings.Contains(body, "cairn_filer_apply_running_seconds ") || strings.Contains(body, "cairn_filer_apply_running_seconds 0\n") {
		t.Fatalf("metrics while stuck:\n%s", grepLines(body, "cairn_filer_apply_running_seconds"))
	}
	select {
	case err := <-done:
		t.Fatalf("the mkdir returned while its apply was held: %v", err)
	default:
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatalf("mkdir after the stall: %v", err)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("readyz after the stall: %d %s", code, body)
	}
	if _, body := n.do(t, http.MethodGet, "/metrics", "", nil); !strings.Contains(body, "cairn_filer_apply_running_seconds 0\n") {
		t.Fatalf("metrics after the stall:\n%s", grepLines(body, "cairn_filer_apply_running_seconds"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
