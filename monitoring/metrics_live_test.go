package monitoring_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// scrape fetches and parses http://addr/metrics.
func scrape(c *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %d", addr, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// value sums, over the scrapes of one kind of server, a family's samples
// whose labels include match: counter and gauge values, histogram sample
// counts. ok is false when no scrape has the family.
func value(scrapes []map[string]*dto.MetricFamily, name string, match map[string]string) (sum float64, ok bool) {
	for _, fams := range scrapes {
		if f, found := fams[name]; found {
			ok = true
			sum += sampleSum(f, match)
		}
	}
	return sum, ok
}

func sampleSum(f *dto.MetricFamily, match map[string]string) float64 {
	sum := 0.0
next:
	for _, m := range f.Metric {
		for k, v := range match {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// startCSI runs `cairn csi --mode controller` with --metrics-addr and
// returns the socket path and the metrics address.
func startCSI(t *testing.T, filer string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	maddr := net.JoinHostPort(testutil.LoopbackIP(t, 9810), "9810")
	logf, err := os.Create(filepath.Join(dir, "csi.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testcluster.Binary(t), "csi", "--mode", "controller", "--endpoint", "unix://"+sock,
		"--filer", filer, "--metrics-addr", maddr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("---- log of cairn csi\n%s", b)
		}
	})
	return sock, maddr
}

func TestMetricsMoveUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	// Two copies of every volume, so that replication has work to do.
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 2, Filers: 1, Replication: "001"})
	master, filer := c.Masters[0].HTTP, c.Filers[0].HTTP
	volumes := []string{c.Volumes[0].HTTP, c.Volumes[1].HTTP}
	sock, csiAddr := startCSI(t, filer)

	// Health endpoints exist on every server.
	for _, a := range append([]string{master, filer}, volumes...) {
		for _, p := range []string{"/healthz", "/readyz"} {
			testutil.WaitFor(t, 60*time.Second, a+p, func() error {
				resp, err := c.Client.Get("http://" + a + p)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%d", resp.StatusCode)
				}
				return nil
			})
		}
	}
	// The filer's first write waits for a master leader to hand out ids.
	put := func(p string, data []byte) error {
		req, _ := http.NewRequest(http.MethodPut, "http://"+filer+p, bytes.NewReader(data))
		resp, err := c.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("PUT %s: %d %s", p, resp.StatusCode, b)
		}
		return nil
	}
	testutil.WaitFor(t, 60*time.Second, "a first write through the filer", func() error { return put("/warmup", []byte("w")) })

	servers := map[string][]string{"master": {master}, "volume": volumes, "filer": {filer}, "csi": {csiAddr}}
	scrapeAll := func() map[string][]map[string]*dto.MetricFamily {
		out := map[string][]map[string]*dto.MetricFamily{}
		for name, addrs := range servers {
			for _, a := range addrs {
				var fams map[string]*dto.MetricFamily
				testutil.WaitFor(t, 60*time.Second, "metrics of "+name+" "+a, func() (err error) {
					fams, err = scrape(c.Client, a)
					return err
				})
				out[name] = append(out[name], fams)
			}
		}
		return out
	}
	before := scrapeAll()

	// The workload: files written, read and removed through the filer, and
	// CSI calls.
	for i := range 20 {
		p := fmt.Sprintf("/load/f%d", i)
		if err := put(p, bytes.Repeat([]byte{byte(i)}, 10000)); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Client.Get("http://" + filer + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.WaitFor(t, 60*time.Second, "the CSI plugin", func() error {
		_, err := csipb.NewIdentityClient(conn).Probe(ctx, &csipb.ProbeRequest{})
		return err
	})
	rw := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	cc := csipb.NewControllerClient(conn)
	if _, err := cc.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "metrics", VolumeCapabilities: []*csipb.VolumeCapability{rw}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{}); err == nil {
		t.Fatal("DeleteVolume without an id succeeded")
	}
	after := scrapeAll()

	// Counters that must have grown, per server.
	for _, m := range []struct {
		server, name string
		match        map[string]string
	}{
		{"master", "cairn_master_requests_total", nil},
		{"master", "cairn_master_request_seconds", map[string]string{"api": "assign"}},
		{"volume", "cairn_volume_http_requests_total", map[string]string{"method": "PUT"}},
		{"volume", "cairn_volume_http_request_seconds", nil},
		{"volume", "cairn_volume_fsyncs_total", nil},
		{"volume", "cairn_volume_synced_records_total", nil},
		{"volume", "cairn_volume_fsync_seconds", nil},
		{"volume", "cairn_volume_group_commit_records", nil},
		{"volume", "cairn_volume_needles", nil},
		{"volume", "cairn_volume_bytes", nil},
		{"volume", "cairn_volume_replicate_seconds", nil},
		{"volume", "cairn_volume_replicated_writes_total", nil},
		{"filer", "cairn_filer_operations_total", nil},
		{"filer", "cairn_filer_operation_seconds", nil},
		{"filer", "cairn_filer_http_requests_total", map[string]string{"method": "GET"}},
		{"filer", "cairn_filer_http_request_seconds", nil},
		{"filer", "cairn_filer_reads_total", nil},
		{"filer", "cairn_filer_raft_commit_index", nil},
		{"filer", "cairn_filer_raft_applied_index", nil},
		{"csi", "cairn_csi_calls_total", map[string]string{"method": "CreateVolume", "code": "OK"}},
		{"csi", "cairn_csi_calls_total", map[string]string{"method": "DeleteVolume", "code": "InvalidArgument"}},
		{"csi", "cairn_csi_call_duration_seconds", map[string]string{"method": "Probe"}},
	} {
		b, _ := value(before[m.server], m.name, m.match)
		a, ok := value(after[m.server], m.name, m.match)
		if !ok || a <= b {
			t.Errorf("%s %s%v: %v before, %v after (present %v); want it to grow", m.server, m.name, m.match, b, a, ok)
		}
	}
	// The master's log grows only when the topology changes or a block of
	// file keys runs out, which this workload need not cause.
	for _, n := range []string{"cairn_master_raft_term", "cairn_master_raft_commit_index", "cairn_master_raft_applied_index"} {
		if v, ok := value(after["master"], n, nil); !ok || v < 1 {
			t.Errorf("master %s = %v (present %v), want at least 1", n, v, ok)
		}
	}
	// Gauges that must be there with a sensible value.
	for _, m := range []struct {
		server, name string
		want         float64
	}{
		{"master", "cairn_master_raft_state", 2}, // a single master leads
		{"filer", "cairn_filer_raft_state", 2},
		{"filer", "cairn_filer_raft_leader", 1},
		{"master", "cairn_master_servers_alive", 2},
		{"volume", "cairn_volume_out_of_sync_volumes", 0},
		{"volume", "cairn_volume_catchup_pending_records", 0},
	} {
		if v, ok := value(after[m.server], m.name, nil); !ok || v != m.want {
			t.Errorf("%s %s = %v (present %v), want %v", m.server, m.name, v, ok, m.want)
		}
	}

	// Every series the dashboard shows for these servers is exposed.
	exposed := map[string]bool{}
	for _, all := range after {
		for _, fams := range all {
			for n := range fams {
				exposed[n] = true
			}
		}
	}
	for m := range dashboardMetrics(loadDashboard(t)) {
		if strings.HasPrefix(m, "cairn_mount_") {
			continue // the mount is not part of this cluster
		}
		if b := baseName(m, func(n string) bool { return exposed[n] }); !exposed[b] {
			t.Errorf("the dashboard queries %s, which no server exposes after the workload", m)
		}
	}
}
