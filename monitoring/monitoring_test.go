// Package monitoring_test checks the shipped Prometheus scrape configuration
// and Grafana dashboard: that they parse, that every metric the dashboard
// queries is one the code registers, and (against a real cluster) that the
// series exist and move under a workload.
package monitoring_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// mountMetrics are the series the mount (fuse/metrics.go) exposes on its
// metrics endpoint. While the mount registers none, the dashboard may use
// only these; once it does, they are checked against the code like the rest.
var mountMetrics = []string{
	"cairn_mount_ops_total", "cairn_mount_op_duration_seconds",
	"cairn_mount_cache_hits_total", "cairn_mount_cache_misses_total", "cairn_mount_dirty_bytes",
}

type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json is not valid JSON: %v", err)
	}
	return d
}

var metricRe = regexp.MustCompile(`\bcairn_[a-z0-9_]+\b`)

// dashboardMetrics returns the metric names the dashboard's queries use,
// histogram suffixes stripped when the base name is the registered one.
func dashboardMetrics(d dashboard) map[string][]string {
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricRe.FindAllString(tg.Expr, -1) {
				out[m] = append(out[m], p.Title)
			}
		}
	}
	return out
}

// registeredMetrics scans the module's Go sources (tests excluded) for the
// names given to Prometheus metrics: Name: "cairn_..." in *Opts literals,
// prometheus.NewDesc("cairn_...", ...) and the gauge helpers' first argument
// (raftGauge("cairn_...", ...)).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|[gG]auge\(\s*)"(cairn_[a-z0-9_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (strings.HasPrefix(e.Name(), ".") && path != ".." || e.Name() == "testdata") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// baseName maps a histogram's _bucket, _sum and _count series to its name
// when that name is known.
func baseName(m string, known func(string) bool) string {
	if known(m) {
		return m
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(m, suf); ok && known(b) {
			return b
		}
	}
	return m
}

func TestDashboardParsesAndUsesRegisteredMetrics(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Fatalf("dashboard without title or uid: %q %q", d.Title, d.UID)
	}
	ids := map[int]bool{}
	graphs := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		graphs++
		if len(p.Targets) == 0 || p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: no queries or not on the datasource variable", p.Title)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad grid position %+v", p.Title, p.GridPos)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || tg.RefID == "" {
				t.Errorf("panel %q: malformed query %q", p.Title, tg.Expr)
			}
		}
	}
	if graphs < 30 {
		t.Errorf("only %d panels", graphs)
	}

	reg := registeredMetrics(t)
	for _, must := range []string{"cairn_master_requests_total", "cairn_volume_fsync_seconds", "cairn_filer_raft_state", "cairn_csi_calls_total"} {
		if !reg[must] {
			t.Fatalf("the source scan misses %s; the scan itself is broken", must)
		}
	}
	mountRegistered := false
	for n := range reg {
		mountRegistered = mountRegistered || strings.HasPrefix(n, "cairn_mount_")
	}
	known := func(n string) bool {
		if strings.HasPrefix(n, "cairn_mount_") && !mountRegistered {
			return slices.Contains(mountMetrics, n)
		}
		return reg[n]
	}
	if !mountRegistered {
		t.Logf("the mount registers no metrics in this tree yet; its panels are checked against the names it promises: %v", mountMetrics)
	}
	used := dashboardMetrics(d)
	for m, panels := range used {
		if b := baseName(m, known); !known(b) {
			t.Errorf("panels %q query %s, which no code registers", panels, m)
		}
	}
	// Every group the issue asks for has at least one panel.
	for _, want := range []string{
		"cairn_master_request_seconds", "cairn_volume_http_request_seconds", "cairn_filer_operation_seconds", // latency
		"cairn_volume_fsync_seconds", "cairn_volume_group_commit_records", // durability
		"cairn_master_raft_term", "cairn_filer_raft_applied_index", // raft
		"cairn_volume_replicate_seconds", "cairn_volume_catchup_pending_records", // replication
		"cairn_volume_needles", "cairn_volume_garbage_ratio", "cairn_filer_operations_total", // data
		"cairn_mount_ops_total", "cairn_mount_dirty_bytes", "cairn_csi_calls_total",
	} {
		found := false
		for m := range used {
			found = found || baseName(m, known) == want
		}
		if !found {
			t.Errorf("no panel shows %s", want)
		}
	}
}

func TestPrometheusConfig(t *testing.T) {
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml is not valid YAML: %v", err)
	}
	scrapes, _ := cfg["scrape_configs"].([]any)
	if len(scrapes) != 1 {
		t.Fatalf("want one scrape config, got %v", cfg["scrape_configs"])
	}
	sc := scrapes[0].(map[string]any)
	sd, _ := sc["nomad_sd_configs"].([]any)
	if sc["job_name"] != "cairn" || len(sd) == 0 || sd[0].(map[string]any)["server"] == "" {
		t.Fatalf("scrape config: %v", sc)
	}
	// The keep rule must let exactly the component services through.
	var keep *regexp.Regexp
	for _, r := range sc["relabel_configs"].([]any) {
		rc := r.(map[string]any)
		if rc["action"] == "keep" {
			keep = regexp.MustCompile("^(?:" + rc["regex"].(string) + ")$")
		}
	}
	if keep == nil {
		t.Fatal("no keep rule on the service name")
	}
	for svc, want := range map[string]bool{"cairn-master": true, "cairn-volume": true, "cairn-filer": true, "cairn-csi": true,
		"cairn-mount": true, "cairn": false, "postgres": false, "cairn-masterx": false} {
		if keep.MatchString(svc) != want {
			t.Errorf("service %q kept: %v, want %v", svc, !want, want)
		}
	}

	// promtool checks the rest. Debian's Prometheus is built without
	// Nomad discovery, so the check runs on a copy that lists the targets
	// statically instead.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus); the structure was checked")
	}
	delete(sc, "nomad_sd_configs")
	sc["static_configs"] = []any{map[string]any{"targets": []any{"127.0.0.1:9333"}, "labels": map[string]any{"__meta_nomad_service": "cairn-master"}}}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(f, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(promtool, "check", "config", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, msg, out)
	}
}
