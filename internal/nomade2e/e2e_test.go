package nomade2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// e2e is the state the steps of TestNomadEndToEnd share.
type e2e struct {
	t        *testing.T
	a        *agent
	cairn    string // the cairn binary the jobs run
	run      string // sockets
	jobs     string // the test's own workloads
	holder   bool   // the binary has fuse-holder: deploy it and roll the mount service
	pgUID    int
	pgGID    int
	mport    int
	fport    int
	vport    int
	seqFrom  int
	seqTo    int
	randData []byte
	wantSeq  string // sha256 of seq seqFrom..seqTo
	wantRand string // sha256 of randData
}

// TestNomadEndToEnd deploys cairn on a real Nomad agent with the shipped
// raw_exec/exec jobspecs and runs the life of a volume through it (see the
// steps below and docs/nomad.md).
func TestNomadEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Nomad agent, cairn and PostgreSQL on real FUSE mounts; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: Nomad's exec driver and CSI mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	for _, b := range []string{"fusermount3", filepath.Join(pgBinDir, "initdb"), filepath.Join(pgBinDir, "pgbench"), filepath.Join(pgBinDir, "pg_amcheck")} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is missing (.ci/run installs fuse3 and postgresql-15): %v", b, err)
		}
	}
	start := time.Now()
	e := &e2e{t: t, cairn: testcluster.Binary(t)}
	e.a = startAgent(t, nomadBinary(t))
	e.run = filepath.Join(e.a.dir, "run")
	e.jobs = filepath.Join(e.a.dir, "jobs")
	for _, d := range []string{e.run, e.jobs, filepath.Join(e.a.dir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no user postgres (the postgresql-15 package creates it): %v", err)
	}
	e.pgUID, _ = strconv.Atoi(u.Uid)
	e.pgGID, _ = strconv.Atoi(u.Gid)
	out, _ := runCmd(time.Minute, nil, "", e.cairn, "fuse-holder", "--help")
	e.holder = !strings.Contains(out, "unknown command")
	t.Logf("cairn binary %s; fuse-holder: %v; nomad agent up after %v", e.cairn, e.holder, time.Since(start).Round(time.Second))

	steps := []struct {
		name string
		fn   func()
	}{
		{"1 deploy cairn", e.deploy},
		{"2 create the database and the shared volume", e.createVolume},
		{"3 write, stop, read back", e.writeRead},
		{"4 node plugin restart and mount service roll under a writer", e.rollUnderWriter},
		{"4b mount service SIGKILL under a reader", e.killUnderReader},
		{"5 snapshot and restore", e.snapshot},
		{"6 PostgreSQL", e.postgres},
		{"7 delete, stop, nothing left", e.teardown},
	}
	var timings []string
	for _, s := range steps {
		st := time.Now()
		t.Logf("step %s: starting", s.name)
		s.fn()
		d := time.Since(st).Round(time.Second)
		timings = append(timings, fmt.Sprintf("%s: %v", s.name, d))
		t.Logf("step %s: done in %v", s.name, d)
	}
	t.Logf("step timings:\n  %s\n  total: %v", strings.Join(timings, "\n  "), time.Since(start).Round(time.Second))
}

// deploy runs the single-node server, the holder, the mount service, the
// controller and the node plugin from nomad-jobs/exec, and waits until
// `nomad plugin status` reports the controller and the node healthy.
func (e *e2e) deploy() {
	t, a := e.t, e.a
	taken := map[int]bool{}
	e.mport = freeServerPort(t, true, taken)
	e.vport = freeServerPort(t, false, taken)
	e.fport = freeServerPort(t, true, taken)
	a.runJob(jobFile(t, "exec/cairn-server.nomad.hcl"), map[string]string{
		"cairn_bin": e.cairn, "data_dir": filepath.Join(a.dir, "server"),
		"master_port": strconv.Itoa(e.mport), "volume_port": strconv.Itoa(e.vport), "filer_port": strconv.Itoa(e.fport),
	})
	a.waitRunning("cairn-server", 1, 0, 5*time.Minute)
	for _, p := range []int{e.mport, e.vport, e.fport} {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", p)
		a.waitFor(5*time.Minute, url, func() error { return httpOK(url) })
	}
	// The other jobs find the filers through Nomad's service discovery.
	a.waitFor(3*time.Minute, "the cairn-filer service to be registered", func() error {
		var regs []struct{ Address string }
		if err := a.api("/v1/service/cairn-filer", &regs); err != nil {
			return err
		}
		if len(regs) != 1 {
			return fmt.Errorf("%d registrations", len(regs))
		}
		return nil
	})

	holderSock := ""
	if e.holder {
		holderSock = filepath.Join(e.run, "fuse-holder.sock")
		a.runJob(jobFile(t, "exec/cairn-fuse-holder.nomad.hcl"), map[string]string{"cairn_bin": e.cairn, "socket": holderSock})
		a.waitRunning("cairn-fuse-holder", 1, 0, 3*time.Minute)
		a.waitFor(2*time.Minute, "the holder's socket", func() error { _, err := os.Stat(holderSock); return err })
	} else {
		t.Logf("this cairn binary has no fuse-holder command: the mount service runs without a holder and step 4 does not roll it")
	}
	e.runMountService(e.cairn, holderSock)
	a.runJob(jobFile(t, "exec/cairn-csi-controller.nomad.hcl"), map[string]string{"cairn_bin": e.cairn, "count": "1"})
	a.runJob(jobFile(t, "exec/cairn-csi-node.nomad.hcl"), map[string]string{
		"cairn_bin": e.cairn, "nomad_data_dir": a.dataDir, "mount_socket": filepath.Join(e.run, "mount.sock"),
	})
	e.waitPluginHealthy()
}

// runMountService runs (or rolls) the shipped mount-service job with bin.
func (e *e2e) runMountService(bin, holderSock string) {
	e.a.runJob(jobFile(e.t, "exec/cairn-mount-service.nomad.hcl"), map[string]string{
		"cairn_bin": bin, "socket": filepath.Join(e.run, "mount.sock"), "holder_socket": holderSock,
		"state_file": filepath.Join(e.a.dir, "state", "mounts.json"),
	})
}

// waitPluginHealthy waits until `nomad plugin status` shows the cairn
// controller and node plugins healthy.
func (e *e2e) waitPluginHealthy() {
	e.a.waitFor(5*time.Minute, "nomad plugin status to show the cairn controller and node healthy", func() error {
		out, err := e.a.nomad(time.Minute, "plugin", "status", "-type", "csi", "-json", "cairn")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var p struct {
			ControllersHealthy, ControllersExpected, NodesHealthy, NodesExpected int
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if p.ControllersHealthy < 1 || p.NodesHealthy < 1 || p.ControllersHealthy != p.ControllersExpected || p.NodesHealthy != p.NodesExpected {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
}

// createVolume creates the shipped database and shared volumes. A volume spec takes
// no variables, so its uid/gid lines (999, the postgres Docker image's
// user) are set to the host's postgres user, as the spec tells exec
// users to do; everything else is as shipped.
func (e *e2e) createVolume() {
	t := e.t
	spec := readFile(jobFile(t, "volumes/database.volume.hcl"))
	for _, kv := range [][2]string{{`uid  = "999"`, fmt.Sprintf(`uid  = "%d"`, e.pgUID)}, {`gid  = "999"`, fmt.Sprintf(`gid  = "%d"`, e.pgGID)}} {
		if !strings.Contains(spec, kv[0]) {
			t.Fatalf("volumes/database.volume.hcl has no line %s", kv[0])
		}
		spec = strings.Replace(spec, kv[0], kv[1], 1)
	}
	out, err := runCmd(5*time.Minute, cliEnv(e.a.addr), spec, e.a.bin, "volume", "create", "-")
	if err != nil || !strings.Contains(out, "Created external volume") {
		t.Fatalf("nomad volume create database.volume.hcl: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	e.a.mustNomad("volume", "status", "cairn-db")
	// The shared volume spec, exactly as shipped.
	out = e.a.mustNomad("volume", "create", jobFile(t, "volumes/shared.volume.hcl"))
	t.Logf("%s", strings.TrimSpace(out))
	var v struct {
		RequestedCapabilities []struct{ AccessMode, AttachmentMode string }
	}
	if err := e.a.api("/v1/volume/csi/cairn-shared", &v); err != nil {
		t.Fatal(err)
	}
	if len(v.RequestedCapabilities) == 0 || v.RequestedCapabilities[0].AccessMode != "multi-node-multi-writer" {
		t.Fatalf("cairn-shared was not created for multi-node-multi-writer: %+v", v.RequestedCapabilities)
	}
}

// writeRead: one exec job writes files and fsyncs them and is stopped; a
// second one on the same volume reads them back.
func (e *e2e) writeRead() {
	t, a := e.t, e.a
	e.seqFrom = int(time.Now().UnixNano() % 100000)
	e.seqTo = e.seqFrom + 150000
	var seq bytes.Buffer
	for i := e.seqFrom; i <= e.seqTo; i++ {
		fmt.Fprintf(&seq, "%d\n", i)
	}
	e.wantSeq = sum(seq.Bytes())
	e.randData = make([]byte, 48<<10+7)
	rand.Read(e.randData)
	e.wantRand = sum(e.randData)

	w := workloadJob(t, e.jobs, "e2e-writer", "service", "cairn-db", "postgres",
		fmt.Sprintf(writerScript, e.seqFrom, e.seqTo), map[string]string{"rand.b64": base64.StdEncoding.EncodeToString(e.randData)})
	a.runJob(w, nil)
	al := a.waitRunning("e2e-writer", 1, 0, 5*time.Minute)[0]
	a.waitFor(5*time.Minute, "the writer to report WROTE-OK", func() error {
		out, err := a.nomad(time.Minute, "alloc", "logs", al.ID, "w")
		if err != nil || !strings.Contains(out, "WROTE-OK") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	a.stopJob("e2e-writer", 3*time.Minute)
	e.waitUnclaimed("cairn-db")
	e.readBack("cairn-db", "e2e-reader", false)
}

// readBack runs a batch reader on volID and checks the files of step 3
// byte for byte (by SHA-256) and, when wantAppend, that the append log is
// whole; it returns the append log's line count.
func (e *e2e) readBack(volID, job string, wantAppend bool) int {
	t, a := e.t, e.a
	r := workloadJob(t, e.jobs, job, "batch", volID, "postgres", readerScript, nil)
	a.runJob(r, nil)
	out := a.waitBatchDone(job, "w", 5*time.Minute)
	for file, want := range map[string]string{"seq.txt": e.wantSeq, "rand.bin": e.wantRand} {
		if !strings.Contains(out, want+"  "+file) {
			t.Fatalf("%s on %s: want sha256 %s, the reader saw:\n%s", file, volID, want, out)
		}
	}
	if !strings.Contains(out, "READ-OK") {
		t.Fatalf("reader on %s did not finish:\n%s", volID, out)
	}
	lines := -1
	if m := regexp.MustCompile(`APPEND-LINES (\d+)`).FindStringSubmatch(out); m != nil {
		lines, _ = strconv.Atoi(m[1])
	} else if wantAppend {
		t.Fatalf("reader on %s found no append log:\n%s", volID, out)
	}
	a.stopJob(job, 3*time.Minute)
	e.waitUnclaimed(volID)
	t.Logf("read back from %s: seq.txt and rand.bin intact, append log %d records", volID, lines)
	return lines
}

// waitUnclaimed waits until no allocation claims volID (Nomad releases
// claims asynchronously after a job stops: unpublish, unstage, then the
// claim).
func (e *e2e) waitUnclaimed(volID string) {
	e.a.waitFor(5*time.Minute, "volume "+volID+" to have no claims", func() error {
		var v struct {
			ReadAllocs, WriteAllocs map[string]any
			Schedulable             bool
		}
		if err := e.a.api("/v1/volume/csi/"+volID, &v); err != nil {
			return err
		}
		if len(v.ReadAllocs)+len(v.WriteAllocs) > 0 || !v.Schedulable {
			return fmt.Errorf("read claims %d, write claims %d, schedulable %v", len(v.ReadAllocs), len(v.WriteAllocs), v.Schedulable)
		}
		return nil
	})
}

// rollUnderWriter: while a writer appends and fsyncs record after record,
// restart the node plugin's allocation, then roll the mount service to a
// new job version (a new binary path: an upgrade). The writer never sees
// an error, is never restarted, and every fsynced record is there.
func (e *e2e) rollUnderWriter() {
	t, a := e.t, e.a
	w := workloadJob(t, e.jobs, "e2e-appender", "service", "cairn-db", "postgres", appenderScript, nil)
	a.runJob(w, nil)
	wa := a.waitRunning("e2e-appender", 1, 0, 5*time.Minute)[0]
	advance := func(what string) { e.advance(wa.ID, 20, "writer", "fsynced records", what) }
	advance("starting")

	nodeAlloc := a.waitRunning("cairn-csi-node", 1, 0, time.Minute)[0]
	a.mustNomad("alloc", "restart", nodeAlloc.ID)
	e.waitPluginHealthy()
	advance("the node plugin restart")

	if e.holder {
		v2 := filepath.Join(e.a.dir, "bin", "cairn-v2")
		copyFile(t, e.cairn, v2)
		holder := a.waitRunning("cairn-fuse-holder", 1, 0, time.Minute)[0]
		before := a.waitRunning("cairn-mount-service", 1, 0, time.Minute)[0]
		e.runMountService(v2, filepath.Join(e.run, "fuse-holder.sock"))
		after := a.waitRunning("cairn-mount-service", 1, int(before.JobVersion)+1, 5*time.Minute)[0]
		t.Logf("mount service rolled from job version %d (alloc %s) to %d (alloc %s)", before.JobVersion, before.ID[:8], after.JobVersion, after.ID[:8])
		advance("the mount service roll")
		// The new version runs the new binary, and the holder was not
		// touched.
		if p := procsRunning(v2 + " mount-service"); len(p) != 1 {
			t.Fatalf("want one mount service running %s after the roll, have %v", v2, p)
		}
		if h := a.waitRunning("cairn-fuse-holder", 1, 0, time.Minute)[0]; h.ID != holder.ID || h.TaskStates["holder"].Restarts != 0 {
			t.Fatalf("the holder changed during the mount service roll: was %s, now %s", holder.describe(), h.describe())
		}
	} else {
		t.Logf("mount service roll not run: this cairn binary has no fuse-holder, and without it a mount service restart breaks running mounts (docs/csi.md)")
	}

	e.checkWriter(wa.ID)
	a.stopJob("e2e-appender", 3*time.Minute)
	out := a.mustNomad("alloc", "logs", wa.ID, "w")
	m := regexp.MustCompile(`STOPPED (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the writer did not report how far it got when stopped:\n%s\n%s", tail(out, 2000), a.taskLogs(wa.ID))
	}
	stopped, _ := strconv.Atoi(m[1])
	e.waitUnclaimed("cairn-db")
	lines := e.readBack("cairn-db", "e2e-reader-2", true)
	// Every record fsynced before the stop is there; the one being
	// written when SIGTERM came may be too.
	if lines < stopped || lines > stopped+1 {
		t.Fatalf("append log has %d records, the writer fsynced %d", lines, stopped)
	}
}

// killUnderReader: while a job calls statfs on the volume and opens and
// reads a file of it over and over, SIGKILL the mount service; Nomad starts it again
// and it resumes the mount from the holder (docs/csi.md, "Restarts"). The
// job never sees an error, is never restarted, and goes on. Skipped
// without a holder, where a killed mount service breaks running mounts.
func (e *e2e) killUnderReader() {
	t, a := e.t, e.a
	if !e.holder {
		t.Logf("mount service kill not run: this cairn binary has no fuse-holder")
		return
	}
	e.waitUnclaimed("cairn-db")
	w := workloadJob(t, e.jobs, "e2e-statter", "service", "cairn-db", "postgres", statterScript, nil)
	a.runJob(w, nil)
	wa := a.waitRunning("e2e-statter", 1, 0, 5*time.Minute)[0]
	advance := func(what string) { e.advance(wa.ID, 40, "reader", "rounds", what) }
	advance("starting")

	const task = "mount-service"
	ms := a.waitRunning("cairn-mount-service", 1, 0, time.Minute)[0]
	restarts := ms.TaskStates[task].Restarts
	a.mustNomad("alloc", "signal", "-s", "SIGKILL", ms.ID, task)
	a.waitFor(3*time.Minute, "Nomad to start the killed mount service again", func() error {
		var al alloc
		if err := a.api("/v1/allocation/"+ms.ID, &al); err != nil {
			return err
		}
		if ts := al.TaskStates[task]; ts.Restarts <= restarts || ts.State != "running" {
			return fmt.Errorf("%s", al.describe())
		}
		return nil
	})
	advance("the mount service kill")
	stdout, _ := a.nomad(time.Minute, "alloc", "logs", ms.ID, task)
	stderr, _ := a.nomad(time.Minute, "alloc", "logs", "-stderr", ms.ID, task)
	logs := stdout + stderr
	if !strings.Contains(logs, "did not hand this mount over") || !strings.Contains(logs, "resumed a live mount") {
		t.Fatalf("the restarted mount service did not resume the mount after the kill:\n%s", tail(logs, 4000))
	}
	t.Logf("requests the killed mount service had left unanswered, served again: %d", strings.Count(logs, "serving again a request"))
	a.stopJob("e2e-statter", 3*time.Minute)
	e.waitUnclaimed("cairn-db")
}

// progress is the last count a workload job's allocation reported on its
// stdout ("PROGRESS N"); 0 before the first.
func (e *e2e) progress(allocID string) int {
	out, _ := e.a.nomad(time.Minute, "alloc", "logs", allocID, "w")
	n := 0
	for _, m := range regexp.MustCompile(`PROGRESS (\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ = strconv.Atoi(m[1])
	}
	return n
}

// advance waits until the workload job's allocation (the job's who, e.g.
// the writer) reports by more units after what, failing the test if it is
// disturbed meanwhile (checkWriter).
func (e *e2e) advance(allocID string, by int, who, units, what string) {
	from := e.progress(allocID)
	e.a.waitFor(5*time.Minute, fmt.Sprintf("the %s to report %d more %s after %s", who, by, units, what), func() error {
		e.checkWriter(allocID)
		if n := e.progress(allocID); n < from+by {
			return fmt.Errorf("at %d %s, was at %d", n, units, from)
		}
		return nil
	})
	e.t.Logf("%s at %d %s after %s", who, e.progress(allocID), units, what)
}

// checkWriter fails the test when a workload job (the appender, the
// statter) reported an I/O error, was restarted or is no longer running.
func (e *e2e) checkWriter(id string) {
	var al alloc
	if err := e.a.api("/v1/allocation/"+id, &al); err != nil {
		e.t.Fatalf("writer allocation: %v", err)
	}
	stderr, _ := e.a.nomad(time.Minute, "alloc", "logs", "-stderr", id, "w")
	if strings.Contains(stderr, "IOERR") || al.ClientStatus != "running" || al.TaskStates["w"].Restarts != 0 {
		e.t.Fatalf("the writer was disturbed: %s\nstderr: %s", al.describe(), tail(stderr, 2000))
	}
}

// snapshot: snapshot the volume, list it, create a volume from it, check
// its content, delete the snapshot and the clone.
func (e *e2e) snapshot() {
	t, a := e.t, e.a
	out := a.mustNomad("volume", "snapshot", "create", "cairn-db", "e2e-snap")
	t.Logf("%s", strings.TrimSpace(out))
	list := a.mustNomad("volume", "snapshot", "list", "-plugin", "cairn")
	if !strings.Contains(list, "e2e-snap") {
		t.Fatalf("nomad volume snapshot list does not show e2e-snap:\n%s", list)
	}
	spec := fmt.Sprintf(`id          = "cairn-db-clone"
name        = "cairn-db-clone"
type        = "csi"
plugin_id   = "cairn"
snapshot_id = "e2e-snap"
capacity_min = "2GiB"
capacity_max = "20GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

parameters {
  uid  = "%d"
  gid  = "%d"
  mode = "0700"
}
`, e.pgUID, e.pgGID)
	out, err := runCmd(5*time.Minute, cliEnv(a.addr), spec, a.bin, "volume", "create", "-")
	if err != nil {
		t.Fatalf("nomad volume create from snapshot e2e-snap: %v\n%s", err, out)
	}
	e.readBack("cairn-db-clone", "e2e-reader-clone", true)
	a.mustNomad("volume", "snapshot", "delete", "cairn", "e2e-snap")
	list = a.mustNomad("volume", "snapshot", "list", "-plugin", "cairn")
	if strings.Contains(list, "e2e-snap") {
		t.Fatalf("e2e-snap still listed after delete:\n%s", list)
	}
	a.mustNomad("volume", "delete", "cairn-db-clone")
}

// teardown: delete the volume, stop every job and the agent; nothing is
// left mounted, running or listening.
func (e *e2e) teardown() {
	t, a := e.t, e.a
	e.waitUnclaimed("cairn-db")
	a.mustNomad("volume", "delete", "cairn-db")
	a.mustNomad("volume", "delete", "cairn-shared")
	out := a.mustNomad("volume", "status", "-type", "csi")
	if strings.Contains(out, "cairn-db") || strings.Contains(out, "cairn-shared") {
		t.Fatalf("volumes still listed after delete:\n%s", out)
	}
	for _, j := range []string{"cairn-csi-controller", "cairn-csi-node", "cairn-mount-service", "cairn-fuse-holder", "cairn-server"} {
		if j == "cairn-fuse-holder" && !e.holder {
			continue
		}
		a.stopJob(j, 5*time.Minute)
	}
	// Nothing of cairn is mounted any more (FUSE mounts, staging and
	// target bind mounts live under the client's csi directory).
	if m := mountsUnder(filepath.Join(a.dataDir, "client", "csi")); len(m) > 0 {
		t.Fatalf("CSI mounts left after every job stopped: %v", m)
	}
	// Nomad keeps the task directories of stopped allocations (and their
	// secrets tmpfs and bind mounts) until it garbage-collects them; an
	// agent that stops keeps them for a restart. Collect them now.
	a.mustNomad("system", "gc")
	a.waitFor(3*time.Minute, "Nomad to garbage-collect the stopped allocations' directories", func() error {
		req, _ := http.NewRequest(http.MethodPut, a.addr+"/v1/client/gc", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if m := mountsUnder(a.dir); len(m) > 0 {
			return fmt.Errorf("still mounted: %v", m)
		}
		return nil
	})
	a.stopAgent()
	mounts, procs, sockets := a.leftovers()
	var cmds []string
	for _, p := range procs {
		cmds = append(cmds, fmt.Sprintf("%d: %s", p, cmdline(p)))
	}
	if len(mounts)+len(procs)+len(sockets) > 0 {
		t.Fatalf("left behind: mounts %v; processes %v; sockets %v", mounts, cmds, sockets)
	}
}

// procsRunning lists the live processes whose command line starts with s.
func procsRunning(s string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c := cmdline(pid); strings.HasPrefix(c, s) {
			out = append(out, fmt.Sprintf("%d: %s", pid, c))
		}
	}
	return out
}

func httpOK(url string) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
