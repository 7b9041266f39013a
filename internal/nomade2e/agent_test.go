package nomade2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/mountinfo"
	"github.com/cairn-storage/cairn/internal/testutil"
)

// repoRoot is the root of the clone (go test runs in the package directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(wd, "..", "..")
	if _, err := os.Stat(filepath.Join(root, "nomad-jobs")); err != nil {
		t.Fatalf("no nomad-jobs/ in %s: %v", root, err)
	}
	return root
}

// jobFile is the path of a shipped file under nomad-jobs/.
func jobFile(t testing.TB, rel string) string {
	return filepath.Join(repoRoot(t), "nomad-jobs", rel)
}

var (
	nomadOnce sync.Once
	nomadPath string
	nomadErr  error
)

// nomadBinary returns $NOMAD_BIN, or the Nomad binary scripts/nomad.sh
// provides (building it once per machine when it is missing).
func nomadBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("NOMAD_BIN"); b != "" {
		return b
	}
	nomadOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "nomad.sh"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			nomadErr = fmt.Errorf("scripts/nomad.sh: %v\n%s", err, tail(stderr.String(), 4000))
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		nomadPath = lines[len(lines)-1]
	})
	if nomadErr != nil {
		t.Fatalf("no Nomad binary: %v", nomadErr)
	}
	return nomadPath
}

// cliEnv is the environment for nomad CLI calls: this process's, without
// any NOMAD_* setting that could point the CLI elsewhere.
func cliEnv(addr string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOMAD_") {
			env = append(env, kv)
		}
	}
	if addr != "" {
		env = append(env, "NOMAD_ADDR="+addr)
	}
	return env
}

// runCmd runs name with a deadline and returns its combined output.
func runCmd(timeout time.Duration, env []string, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish within %v: %w", filepath.Base(name), timeout, err)
	}
	return string(out), err
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeServerPort returns an HTTP port p such that p, p+10000 and (with
// raft) p+20000 are free on 127.0.0.1, for a cairn server whose gRPC and
// Raft ports follow its HTTP port.
func freeServerPort(t testing.TB, raft bool, taken map[int]bool) int {
	t.Helper()
	for p := 11000 + int(time.Now().UnixNano()%20000); ; p++ {
		if p > 45000 {
			p = 11000
		}
		ports := []int{p, p + 10000}
		if raft {
			ports = append(ports, p+20000)
		}
		ok := true
		for _, q := range ports {
			if taken[q] || !portFree(q) {
				ok = false
				break
			}
		}
		if ok {
			for _, q := range ports {
				taken[q] = true
			}
			return p
		}
	}
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// agent is one Nomad agent, server and client, on 127.0.0.1 with its data
// in a directory of its own. Its cleanup (registered by startAgent) stops
// every job, stops the agent, kills any process left from its directory,
// lazily unmounts anything under it and removes it, also when the test fails.
type agent struct {
	t       *testing.T
	bin     string
	dir     string // everything of the test lives under here
	dataDir string // Nomad's data_dir
	addr    string // http://127.0.0.1:port
	logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the agent has exited
}

// startAgent starts a Nomad agent as NOMAD.md describes (raw_exec enabled,
// exec detected) and waits until its node is ready with both drivers
// healthy.
func startAgent(t *testing.T, bin string) *agent {
	t.Helper()
	// A short directory: CSI plugin sockets live under the data dir and a
	// unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "cn")
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, bin: bin, dir: dir, dataDir: filepath.Join(dir, "nomad"), logPath: filepath.Join(dir, "agent.log")}
	t.Cleanup(a.cleanup)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	for ports[1] == ports[0] || ports[2] == ports[0] || ports[2] == ports[1] {
		ports = []int{freePort(t), freePort(t), freePort(t)}
	}
	a.addr = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	cfg := fmt.Sprintf(`data_dir  = %q
bind_addr = "127.0.0.1"
log_level = "DEBUG"
disable_update_check = true
ports {
  http = %d
  rpc  = %d
  serf = %d
}
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
server {
  enabled          = true
  bootstrap_expect = 1
}
client {
  enabled           = true
  network_interface = "lo"
%s}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`, a.dataDir, ports[0], ports[1], ports[2], chrootEnv())
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	a.cmd = exec.Command(bin, "agent", "-config", cfgPath)
	a.cmd.Env = cliEnv("")
	a.cmd.Stdout, a.cmd.Stderr = lf, lf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start nomad agent: %v", err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Logf("nomad agent started on %s, data in %s, log %s", a.addr, a.dataDir, a.logPath)

	a.waitFor(3*time.Minute, "the Nomad node to be ready with raw_exec and exec healthy", func() error {
		select {
		case <-a.done:
			t.Fatalf("nomad agent exited at start: %v\n%s", a.cmd.ProcessState, tail(readFile(a.logPath), 4000))
		default:
		}
		var nodes []struct {
			ID      string
			Status  string
			Drivers map[string]struct{ Detected, Healthy bool }
		}
		if err := a.api("/v1/nodes", &nodes); err != nil {
			return err
		}
		if len(nodes) != 1 || nodes[0].Status != "ready" {
			return fmt.Errorf("nodes: %+v", nodes)
		}
		for _, d := range []string{"raw_exec", "exec"} {
			if !nodes[0].Drivers[d].Healthy {
				return fmt.Errorf("driver %s not healthy: %+v", d, nodes[0].Drivers)
			}
		}
		return nil
	})
	return a
}

// chrootEnv is the client's chroot_env block: what exec tasks see in
// their chroot, which Nomad builds by linking every file into each task
// directory. The default (all of /usr, /etc, /bin, /lib, ...) is 150000
// files on a build machine with Go and takes minutes per task on a busy
// one; this is what the test's workloads and PostgreSQL need (the paths
// that exist here).
func chrootEnv() string {
	var b strings.Builder
	b.WriteString("  chroot_env {\n")
	for _, p := range []string{"/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin", "/usr/lib64",
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/locale",
		"/usr/lib/postgresql", "/usr/share/postgresql", "/usr/share/zoneinfo", "/etc"} {
		if _, err := os.Lstat(p); err == nil {
			fmt.Fprintf(&b, "    %q = %q\n", p, p)
		}
	}
	b.WriteString("  }\n")
	return b.String()
}

// waitFor is testutil.WaitFor that also fails at once, with the agent's
// log, when the agent has died.
func (a *agent) waitFor(timeout time.Duration, what string, cond func() error) {
	a.t.Helper()
	testutil.WaitFor(a.t, timeout, what, func() error {
		select {
		case <-a.done:
			a.t.Fatalf("nomad agent exited while waiting for %s: %v\n%s", what, a.cmd.ProcessState, tail(readFile(a.logPath), 4000))
		default:
		}
		err := cond()
		if err != nil {
			time.Sleep(time.Second) // the CLI and API calls are not free on a busy machine
		}
		return err
	})
}

// nomad runs the nomad CLI against the agent.
func (a *agent) nomad(timeout time.Duration, args ...string) (string, error) {
	return runCmd(timeout, cliEnv(a.addr), "", a.bin, args...)
}

// mustNomad runs the nomad CLI and fails the test on error.
func (a *agent) mustNomad(args ...string) string {
	a.t.Helper()
	out, err := a.nomad(5*time.Minute, args...)
	if err != nil {
		a.t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// api GETs path from the agent's HTTP API and decodes the JSON answer.
func (a *agent) api(path string, out any) error {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(a.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(b.String()))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// runJob submits a jobspec file with -var flags (in name order) and does
// not wait for it.
func (a *agent) runJob(file string, vars map[string]string) {
	a.t.Helper()
	args := []string{"job", "run", "-detach"}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-var", k+"="+vars[k])
	}
	a.mustNomad(append(args, file)...)
}

// alloc is what the tests read of an allocation.
type alloc struct {
	ID            string
	JobID         string
	TaskGroup     string
	JobVersion    uint64
	ClientStatus  string
	DesiredStatus string
	TaskStates    map[string]struct {
		State    string
		Failed   bool
		Restarts uint64
		Events   []struct {
			Type           string
			DisplayMessage string
		}
	}
}

// describe is one line per task: its state, restarts and last events.
func (al alloc) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alloc %s of %s v%d: %s/%s", al.ID[:8], al.JobID, al.JobVersion, al.ClientStatus, al.DesiredStatus)
	for name, ts := range al.TaskStates {
		fmt.Fprintf(&b, "; task %s %s restarts=%d", name, ts.State, ts.Restarts)
		ev := ts.Events
		if len(ev) > 3 {
			ev = ev[len(ev)-3:]
		}
		for _, e := range ev {
			fmt.Fprintf(&b, " [%s: %s]", e.Type, e.DisplayMessage)
		}
	}
	return b.String()
}

// allocs returns the allocations of job.
func (a *agent) allocs(job string) ([]alloc, error) {
	var out []alloc
	err := a.api("/v1/job/"+job+"/allocations", &out)
	return out, err
}

// waitRunning waits until job has n allocations running that Nomad wants
// running (and, if minVersion >= 0, of at least that job version), and
// returns them. A failed allocation ends the wait with its events.
func (a *agent) waitRunning(job string, n int, minVersion int, timeout time.Duration) []alloc {
	a.t.Helper()
	var running []alloc
	a.waitFor(timeout, fmt.Sprintf("%d running allocation(s) of job %s", n, job), func() error {
		all, err := a.allocs(job)
		if err != nil {
			return err
		}
		running = running[:0]
		var other []string
		for _, al := range all {
			if al.DesiredStatus == "run" && al.ClientStatus == "running" && int(al.JobVersion) >= minVersion {
				running = append(running, al)
				continue
			}
			if al.DesiredStatus == "run" && al.ClientStatus == "failed" {
				a.t.Fatalf("job %s failed: %s\n%s", job, al.describe(), a.taskLogs(al.ID))
			}
			other = append(other, al.describe())
		}
		if len(running) != n {
			return fmt.Errorf("%d running; others: %s", len(running), strings.Join(other, " | "))
		}
		return nil
	})
	return running
}

// waitBatchDone waits for the one allocation of a batch job to complete
// and returns its stdout; failure ends the test with its logs.
func (a *agent) waitBatchDone(job, task string, timeout time.Duration) string {
	a.t.Helper()
	var id string
	a.waitFor(timeout, "batch job "+job+" to complete", func() error {
		all, err := a.allocs(job)
		if err != nil {
			return err
		}
		if len(all) != 1 {
			return fmt.Errorf("%d allocations", len(all))
		}
		switch all[0].ClientStatus {
		case "complete":
			id = all[0].ID
			return nil
		case "failed", "lost":
			a.t.Fatalf("batch job %s: %s\n%s", job, all[0].describe(), a.taskLogs(all[0].ID))
		}
		return errors.New(all[0].describe())
	})
	return a.mustNomad("alloc", "logs", id, task)
}

// waitTerminal waits until no allocation of job is running or pending.
func (a *agent) waitTerminal(job string, timeout time.Duration) {
	a.t.Helper()
	a.waitFor(timeout, "every allocation of "+job+" to stop", func() error {
		all, err := a.allocs(job)
		if err != nil {
			if strings.Contains(err.Error(), "404") {
				return nil
			}
			return err
		}
		for _, al := range all {
			if al.ClientStatus == "running" || al.ClientStatus == "pending" {
				return errors.New(al.describe())
			}
		}
		return nil
	})
}

// stopJob stops and purges job and waits for its allocations to stop.
func (a *agent) stopJob(job string, timeout time.Duration) {
	a.t.Helper()
	a.mustNomad("job", "stop", "-purge", "-detach", job)
	a.waitTerminal(job, timeout)
}

// taskLogs is the tail of every task's stdout and stderr log of an
// allocation, read from the client's alloc dir.
func (a *agent) taskLogs(allocID string) string {
	files, _ := filepath.Glob(filepath.Join(a.dataDir, "alloc", allocID, "alloc", "logs", "*"))
	var b strings.Builder
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".") {
			continue
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), tail(readFile(f), 3000))
	}
	return b.String()
}

// allTaskLogs is taskLogs for every allocation the client has.
func (a *agent) allTaskLogs() string {
	dirs, _ := filepath.Glob(filepath.Join(a.dataDir, "alloc", "*"))
	var b strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&b, "=== allocation %s\n%s", filepath.Base(d), a.taskLogs(filepath.Base(d)))
	}
	return b.String()
}

// stopAgent stops the agent (SIGINT, then SIGKILL of its process group
// after a minute) and waits for it to exit.
func (a *agent) stopAgent() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	}
}

// leftovers lists what the test left behind under a.dir: mounts, live
// processes (their command line, root or working directory is under it)
// and unix sockets.
func (a *agent) leftovers() (mounts []string, procs []int, sockets []string) {
	mounts = mountsUnder(a.dir)
	procs = procsUnder(a.dir)
	filepath.WalkDir(a.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type()&os.ModeSocket != 0 {
			sockets = append(sockets, p)
		}
		return nil
	})
	return
}

// cleanup runs at the end of the test, passed or failed: it stops every
// job, the agent, kills processes left from a.dir, lazily unmounts what is
// mounted under it and removes it.
func (a *agent) cleanup() {
	t := a.t
	if t.Failed() {
		t.Logf("nomad agent log (tail):\n%s", tail(readFile(a.logPath), 6000))
		t.Logf("task logs:\n%s", a.allTaskLogs())
	}
	select {
	case <-a.done:
	default:
		var jobs []struct{ ID, Status string }
		if err := a.api("/v1/jobs", &jobs); err == nil {
			for _, j := range jobs {
				if j.Status != "dead" {
					a.nomad(2*time.Minute, "job", "stop", "-purge", "-detach", j.ID)
				}
			}
			deadline := time.Now().Add(3 * time.Minute)
			for time.Now().Before(deadline) {
				var allocs []alloc
				if err := a.api("/v1/allocations", &allocs); err != nil {
					break
				}
				busy := 0
				for _, al := range allocs {
					if al.ClientStatus == "running" || al.ClientStatus == "pending" {
						busy++
					}
				}
				if busy == 0 {
					break
				}
				time.Sleep(time.Second)
			}
		}
		a.stopAgent()
	}
	for _, pid := range procsUnder(a.dir) {
		t.Logf("cleanup: killing leftover process %d: %s", pid, cmdline(pid))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range mountsUnder(a.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("cleanup: lazy unmount of %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(a.dir); err != nil {
		t.Logf("cleanup: remove %s: %v", a.dir, err)
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		if p := m.Point; p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// procsUnder lists live processes (not zombies) whose command line, root
// or working directory is under dir: the agent, its executors, the raw_exec
// tasks (their flags name paths under dir) and the exec tasks (chrooted
// into their task directories).
func procsUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(st), ')'); i < 0 || i+2 >= len(st) || st[i+2] == 'Z' {
			continue
		}
		hit := strings.Contains(cmdline(pid), dir)
		for _, l := range []string{"root", "cwd"} {
			if p, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err == nil && (p == dir || strings.HasPrefix(p, dir+"/")) {
				hit = true
			}
		}
		if hit {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
