package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// promServer is a Prometheus server with its TSDB on a mount.
type promServer struct {
	t       *testing.T
	args    []string
	addr    string
	logFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (p *promServer) start() {
	p.t.Helper()
	lf, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== start prometheus %s\n", strings.Join(p.args, " "))
	cmd := exec.Command("/usr/bin/prometheus", p.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	testutil.WaitFor(p.t, 3*time.Minute, "prometheus to be ready (WAL replay included)", func() error {
		select {
		case <-done:
			p.t.Fatalf("prometheus exited: %v\n%s", cmd.ProcessState, p.log())
		default:
		}
		resp, err := http.Get("http://" + p.addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %d", resp.StatusCode)
		}
		return nil
	})
}

// stop sends SIGTERM and waits for a clean exit (head and WAL closed).
func (p *promServer) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("prometheus did not exit within 2m of SIGTERM\n%s", p.log())
	}
	if !p.cmd.ProcessState.Success() {
		p.t.Fatalf("prometheus exited with %v after SIGTERM\n%s", p.cmd.ProcessState, p.log())
	}
}

func (p *promServer) log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// query evaluates an instant PromQL query at time at (zero: now) and
// returns the single result's value, or -1 when the result is empty.
func (p *promServer) query(q string, at time.Time) (float64, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?" + v.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value []any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("query %q: %v: %s", q, err, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", q, r.Error)
	}
	switch len(r.Data.Result) {
	case 0:
		return -1, nil
	case 1:
	default:
		return 0, fmt.Errorf("query %q: %d series, want one", q, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

func (p *promServer) mustQuery(q string, at time.Time) float64 {
	p.t.Helper()
	v, err := p.query(q, at)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

// metric reads one unlabelled sample from the server's own /metrics.
func (p *promServer) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("metric %s not exposed", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// blocks lists the persisted TSDB blocks (directories with a meta.json).
func tsdbBlocks(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); err == nil && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestAppPrometheus runs Prometheus with its TSDB on a mount, scraping
// itself and the cairn servers every second, with blocks of 10 seconds so
// that head compaction, WAL checkpoints and merges of blocks all happen
// within the test; an admin-API snapshot (hard links of the blocks) is
// taken too. After a restart (SIGTERM, start): the samples from before the
// restart are all still there, new ones are added, the log has no TSDB
// error or corruption, promtool tsdb analyze reads every block, and no
// compaction, WAL or reload failure was counted.
func TestAppPrometheus(t *testing.T) {
	needApps(t, "prometheus", "/usr/bin/prometheus", "/usr/bin/promtool")
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	checkFilerStateAtEnd(t, c)
	m := startAppMount(t, c)
	tsdb := filepath.Join(m.Point, "prometheus")
	if err := os.Mkdir(tsdb, 0o755); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	addr := net.JoinHostPort(testutil.LoopbackIP(t, 9090), "9090")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['%s']
  - job_name: cairn
    static_configs:
      - targets: ['%s', '%s', '%s']
`, addr, c.Masters[0].HTTP, c.Volumes[0].HTTP, c.Filers[0].HTTP)
	cfgFile := filepath.Join(local, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	block := envInt("CAIRN_PROM_BLOCK_SECONDS", 10)
	p := &promServer{t: t, addr: addr, logFile: filepath.Join(local, "prometheus.log"), args: []string{
		"--config.file=" + cfgFile, "--storage.tsdb.path=" + tsdb, "--web.listen-address=" + addr,
		fmt.Sprintf("--storage.tsdb.min-block-duration=%ds", block),
		fmt.Sprintf("--storage.tsdb.max-block-duration=%ds", 9*block),
		"--storage.tsdb.retention.time=1d", "--web.enable-admin-api", "--log.level=info",
	}}
	t.Cleanup(func() {
		if p.cmd != nil {
			select {
			case <-p.done:
			default:
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			l := p.log()
			if len(l) > 30000 {
				l = l[len(l)-30000:]
			}
			t.Logf("---- prometheus log\n%s", l)
		}
	})
	start := time.Now()
	p.start()

	// Head compactions write blocks to the mount; later compactions merge
	// them into larger blocks and delete the merged ones.
	testutil.WaitFor(t, 4*time.Minute, "three head compactions and a merge of blocks", func() error {
		n, err := p.metric("prometheus_tsdb_compactions_total")
		if err != nil {
			return err
		}
		if n < 4 {
			return fmt.Errorf("%v compactions so far, %d blocks on the mount", n, len(tsdbBlocks(tsdb)))
		}
		return nil
	})
	t.Logf("compactions done after %v; blocks %v", time.Since(start).Round(time.Second), tsdbBlocks(tsdb))

	// A snapshot through the admin API: hard links of every block plus
	// the head written as a new block.
	resp, err := http.Post("http://"+addr+"/api/v1/admin/tsdb/snapshot", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var snap struct {
		Status string
		Data   struct{ Name string }
	}
	if json.Unmarshal(body, &snap); resp.StatusCode != http.StatusOK || snap.Status != "success" || snap.Data.Name == "" {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}
	snapDir := filepath.Join(tsdb, "snapshots", snap.Data.Name)
	if len(tsdbBlocks(snapDir)) == 0 {
		t.Fatalf("snapshot %s holds no block", snapDir)
	}

	// The samples of up{job="self"} up to now, counted before and after
	// the restart over the same window.
	q := `count_over_time(up{job="self"}[1h])`
	testutil.WaitFor(t, time.Minute, "30 samples of up", func() error {
		if n, err := p.query(q, time.Time{}); err != nil || n < 30 {
			return fmt.Errorf("%v samples (%v)", n, err)
		}
		return nil
	})
	before := time.Now().Add(-2 * time.Second)
	n1 := p.mustQuery(q, before)
	p.stop()
	p.start()
	if n := p.mustQuery(q, before); n != n1 {
		t.Fatalf("after the restart %v samples of up up to %v, before it %v", n, before.Format(time.RFC3339), n1)
	}
	testutil.WaitFor(t, time.Minute, "new samples after the restart, and one more head compaction", func() error {
		n, err := p.query(q, time.Time{})
		if err != nil {
			return err
		}
		if n < n1+10 {
			return fmt.Errorf("%v samples of up, %v before the restart", n, n1)
		}
		if c, err := p.metric("prometheus_tsdb_compactions_total"); err != nil || c < 1 {
			return fmt.Errorf("no compaction since the restart yet (%v, %v)", c, err)
		}
		return nil
	})
	for _, name := range []string{
		"prometheus_tsdb_compactions_failed_total",
		"prometheus_tsdb_head_truncations_failed_total",
		"prometheus_tsdb_checkpoint_creations_failed_total",
		"prometheus_tsdb_checkpoint_deletions_failed_total",
		"prometheus_tsdb_reloads_failures_total",
		"prometheus_tsdb_wal_corruptions_total",
		"prometheus_tsdb_wal_truncations_failed_total",
		"prometheus_tsdb_wal_writes_failed_total",
	} {
		if v, err := p.metric(name); err != nil || v != 0 {
			t.Errorf("%s = %v (%v), want 0", name, v, err)
		}
	}
	p.stop()
	t.Logf("%v samples of up before the restart; blocks at the end %v", n1, tsdbBlocks(tsdb))

	bad := regexp.MustCompile(`(?i)level=error|compaction failed|corrupt`)
	for _, l := range strings.Split(p.log(), "\n") {
		if bad.MatchString(l) {
			t.Errorf("prometheus log: %s", l)
		} else if strings.Contains(l, "level=warn") {
			t.Logf("prometheus log (warning): %s", l)
		}
	}
	out := appMustRun(t, 3*time.Minute, "/usr/bin/promtool", "tsdb", "analyze", tsdb)
	if !strings.Contains(out, "Block ID") {
		t.Fatalf("promtool tsdb analyze printed no block:\n%s", out)
	}
	list := appMustRun(t, 3*time.Minute, "/usr/bin/promtool", "tsdb", "list", tsdb)
	if len(strings.Split(strings.TrimSpace(list), "\n")) < 2 {
		t.Fatalf("promtool tsdb list shows no block:\n%s", list)
	}
	appMustRun(t, 3*time.Minute, "/usr/bin/promtool", "tsdb", "analyze", snapDir)
}
