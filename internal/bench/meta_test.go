package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/testutil"
)

const testFilerPort = 8888

// startFiler runs a single-member filer in this process and returns its
// HTTP address once it has elected itself leader. Metadata operations do
// not need a master, so the master address points nowhere.
func startFiler(t *testing.T) string {
	t.Helper()
	ip := testutil.LoopbackIP(t, testFilerPort, testFilerPort+10000, testFilerPort+20000)
	s, err := filer.NewServer(filer.Config{
		Dir: t.TempDir(), IP: ip, Port: testFilerPort,
		Masters: []string{"127.0.0.1:1"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("filer Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("filer did not stop")
		}
	})
	// Poll /readyz rather than calling s.Ready: Run sets up the Raft node
	// while this goroutine would read it.
	hc := &http.Client{Timeout: 2 * time.Second}
	testutil.WaitFor(t, 30*time.Second, "filer leader", func() error {
		select {
		case err := <-done:
			t.Fatalf("filer exited early: %v", err)
		default:
		}
		resp, err := hc.Get("http://" + s.URL() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	return s.URL()
}

func phases(results []MetaResult) map[string]MetaResult {
	m := make(map[string]MetaResult)
	for _, r := range results {
		m[r.Phase] = r
	}
	return m
}

func checkPhase(t *testing.T, m map[string]MetaResult, phase string, ops int) {
	t.Helper()
	r, ok := m[phase]
	if !ok {
		t.Errorf("phase %s missing", phase)
		return
	}
	if r.Ops != ops || r.Errors != 0 {
		t.Errorf("phase %s: %d ops, %d errors; want %d ops, 0 errors", phase, r.Ops, r.Errors, ops)
	}
	if ops > 0 && (r.OpsPerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99) {
		t.Errorf("phase %s: implausible figures %+v", phase, r)
	}
}

func listNames(t *testing.T, c *filer.Client, path string) []string {
	t.Helper()
	ctx := context.Background()
	in, err := c.Resolve(ctx, path)
	if err != nil {
		t.Fatalf("resolve %s: %v", path, err)
	}
	ents, err := c.ReadDir(ctx, in.Ino, "", 10000)
	if err != nil {
		t.Fatalf("readdir %s: %v", path, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names
}

func TestRunMetaAgainstFiler(t *testing.T) {
	addr := startFiler(t)
	c := filer.NewClient([]string{addr}, nil)
	defer c.Close()
	ctx := context.Background()

	t.Run("fresh directory", func(t *testing.T) {
		var out bytes.Buffer
		const n, list = 300, 1200
		results, err := RunMeta(ctx, MetaConfig{
			Filers: []string{addr}, N: n, Concurrency: 4, Out: &out,
			Dir: "/bt/run", ListEntries: list, Listings: 5,
		})
		t.Log("\n" + out.String())
		if err != nil {
			t.Fatal(err)
		}
		m := phases(results)
		if len(results) != 7 {
			t.Errorf("%d phases, want 7", len(results))
		}
		for _, p := range []string{PhaseCreate, PhaseStat, PhaseRename, PhaseUnlink} {
			checkPhase(t, m, p, n)
		}
		checkPhase(t, m, PhaseCreateShared, list)
		checkPhase(t, m, PhaseUnlinkShared, list)
		rd := m[PhaseReaddir]
		// 1200 entries in pages of 1000: two pages per listing.
		checkPhase(t, m, PhaseReaddir, 5*2)
		if rd.Listings != 5 || rd.Entries != 5*list || rd.EntriesPerSec <= 0 || rd.ListTime <= 0 {
			t.Errorf("readdir: %+v", rd)
		}
		if !strings.Contains(out.String(), "\nRESULT n=300 concurrency=4 ") || !strings.Contains(out.String(), " errors=0\n") ||
			!strings.Contains(out.String(), " readdir_entries_per_sec=") || !strings.Contains(out.String(), "\nOK: ") {
			t.Errorf("report lacks the RESULT or OK line:\n%s", out.String())
		}
		// The directory the run made is gone again; its parent is empty.
		if _, err := c.Resolve(ctx, "/bt/run"); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("resolve /bt/run after the run: %v, want ENOENT", err)
		}
		if names := listNames(t, c, "/bt"); len(names) != 0 {
			t.Errorf("/bt holds %v after the run", names)
		}
	})

	t.Run("existing empty directory, page boundary", func(t *testing.T) {
		if _, err := c.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "keep", Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		results, err := RunMeta(ctx, MetaConfig{
			Filers: []string{addr}, N: 101, Concurrency: 3, Out: &out,
			Dir: "/keep/", ListEntries: 1000, PageSize: 500, Listings: 2,
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		m := phases(results)
		for _, p := range []string{PhaseCreate, PhaseStat, PhaseRename, PhaseUnlink} {
			checkPhase(t, m, p, 101)
		}
		// Two full pages, then an empty one ends each listing.
		checkPhase(t, m, PhaseReaddir, 2*3)
		if rd := m[PhaseReaddir]; rd.Entries != 2*1000 {
			t.Errorf("readdir returned %d entries, want 2000", rd.Entries)
		}
		// A directory the run did not make stays, emptied.
		if names := listNames(t, c, "/keep"); len(names) != 0 {
			t.Errorf("/keep holds %v after the run", names)
		}
	})

	t.Run("default directory, no shared phases", func(t *testing.T) {
		before := listNames(t, c, "/")
		results, err := RunMeta(ctx, MetaConfig{Filers: []string{addr}, N: 20, Concurrency: 8, ListEntries: -1})
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 4 {
			t.Errorf("%d phases, want 4 without the shared directory", len(results))
		}
		m := phases(results)
		for _, p := range []string{PhaseCreate, PhaseStat, PhaseRename, PhaseUnlink} {
			checkPhase(t, m, p, 20)
		}
		if after := listNames(t, c, "/"); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("root held %v before the run and %v after", before, after)
		}
	})

	t.Run("non-empty directory refused", func(t *testing.T) {
		res, err := c.Apply(ctx, &filer.Mkdir{Parent: filer.RootIno, Name: "full", Mode: 0o755})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, &filer.Create{Parent: res.Inode.Ino, Name: "x", Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		_, err = RunMeta(ctx, MetaConfig{Filers: []string{addr}, N: 10, Dir: "/full"})
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("RunMeta in a non-empty directory: %v, want a refusal", err)
		}
		if names := listNames(t, c, "/full"); strings.Join(names, ",") != "x" {
			t.Errorf("/full holds %v, want just x", names)
		}
	})

	t.Run("MetaMain", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := MetaMain([]string{"--filer", addr, "-n", "40", "-c", "2", "--list-entries", "50", "--quiet"}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "\nRESULT n=40 concurrency=2 filers=1 list_entries=50 create_ops=40 create_errors=0 ") {
			t.Errorf("no RESULT line as expected:\n%s", stdout.String())
		}
	})
}

func TestMetaMainFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"--bogus"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		if code := MetaMain(args, &stdout, &stderr); code != 2 {
			t.Errorf("MetaMain %v: exit %d, want 2", args, code)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := MetaMain([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "Usage: cairn benchmark meta") {
		t.Errorf("MetaMain -h: exit %d, stderr %q", code, stderr.String())
	}
}

func TestRunMetaConfig(t *testing.T) {
	for _, cfg := range []MetaConfig{
		{},
		{Filers: []string{"127.0.0.1:1"}, N: -1},
		{Filers: []string{"127.0.0.1:1"}, Dir: "relative"},
		{Filers: []string{"127.0.0.1:1"}, Dir: "//"},
	} {
		if _, err := RunMeta(context.Background(), cfg); err == nil {
			t.Errorf("RunMeta(%+v) succeeded", cfg)
		}
	}
}
