package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
	"github.com/cairn-storage/cairn/internal/testutil"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgServer is a PostgreSQL cluster whose data directory is on a mount,
// run as the unprivileged user postgres (it refuses to run as root) and
// reachable on a unix socket only.
type pgServer struct {
	t       *testing.T
	data    string // data directory, on the mount
	sock    string // socket directory, local
	port    int
	logFile string // server log, local
	uid     uint32
	gid     uint32

	proc *exec.Cmd     // the running postmaster
	done chan struct{} // closed when proc has exited
}

// pgUser returns the uid and gid of the user postgres, creating it as a
// system user if the package did not.
func pgUser(t *testing.T) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("no user postgres and not root to create one")
		}
		appMustRun(t, time.Minute, "useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "postgres")
		if u, err = user.Lookup("postgres"); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uint32(uid), uint32(gid)
}

// asPostgres is a command run as the user postgres.
func (s *pgServer) asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(pgBinDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	cmd.Dir = s.sock
	cmd.Env = []string{"HOME=" + s.sock, "PATH=/usr/bin:/bin", "LC_ALL=C"}
	return cmd
}

// pgRun runs a server tool as postgres and returns its output.
func (s *pgServer) pgRun(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := s.asPostgres(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish within %v: %w", name, timeout, err)
	}
	return string(out), err
}

// client runs a client program (psql, pgbench, pg_amcheck) against the
// server; it connects as the database user postgres over the socket.
func (s *pgServer) client(ctx context.Context, name string, args ...string) *exec.Cmd {
	args = append([]string{"-h", s.sock, "-p", strconv.Itoa(s.port), "-U", "postgres"}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(pgBinDir, name), args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "PGCONNECT_TIMEOUT=10"}
	return cmd
}

// psql runs one SQL string in autocommit mode and returns unaligned,
// tuples-only output; a nil error means every statement (and its commit)
// succeeded.
func (s *pgServer) psql(timeout time.Duration, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := s.client(ctx, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (s *pgServer) mustPsql(sql string) string {
	s.t.Helper()
	out, err := s.psql(2*time.Minute, sql)
	if err != nil {
		s.t.Fatalf("psql %q: %v\n%s\nserver log:\n%s", sql, err, out, s.log())
	}
	return out
}

func (s *pgServer) log() string {
	b, _ := os.ReadFile(s.logFile)
	if len(b) > 30000 {
		b = b[len(b)-30000:]
	}
	return string(b)
}

// start starts the postmaster (as pg_ctl start would, but as a child of
// the test, so that its exit is reaped here and never leaves a zombie
// holding postmaster.pid) and waits until it accepts connections; after a
// crash this includes crash recovery, with no manual step.
func (s *pgServer) start() {
	s.t.Helper()
	lf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer lf.Close()
	cmd := s.asPostgres(context.Background(), "postgres", "-D", s.data)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.proc, s.done = cmd, done
	testutil.WaitFor(s.t, 4*time.Minute, "postgres to accept connections (crash recovery included)", func() error {
		select {
		case <-done:
			s.t.Fatalf("postgres exited at start: %v\nserver log:\n%s", cmd.ProcessState, s.log())
		default:
		}
		_, err := s.psql(30*time.Second, "SELECT 1")
		return err
	})
}

// stop shuts the server down cleanly (a shutdown checkpoint).
func (s *pgServer) stop() {
	s.t.Helper()
	if out, err := s.pgRun(5*time.Minute, "pg_ctl", "-D", s.data, "-w", "-t", "240", "-m", "fast", "stop"); err != nil {
		s.t.Fatalf("pg_ctl stop: %v\n%s\nserver log:\n%s", err, out, s.log())
	}
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.t.Fatal("postgres still running a minute after pg_ctl stop returned")
	}
}

// running reports whether the postmaster is alive.
func (s *pgServer) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// crash SIGKILLs the postmaster and every backend, like a power cut of
// the server, and waits until all of them are gone. Backends put
// themselves in process groups of their own, so they are found as the
// postmaster's children while it is stopped (it cannot fork meanwhile).
func (s *pgServer) crash() {
	s.t.Helper()
	pid := s.proc.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	// The signal takes effect when the postmaster next runs: until it is
	// stopped it may still fork a backend, which a listing taken too
	// early misses (that backend then holds the shared memory, and the
	// restart fails with "pre-existing shared memory block is still in
	// use").
	testutil.WaitFor(s.t, 60*time.Second, "the postmaster to stop", func() error {
		if st, _ := procState(pid); st != "T" {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	kids := childrenOf(pid)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	<-s.done
	testutil.WaitFor(s.t, 60*time.Second, "every postgres process to exit", func() error {
		for _, k := range kids {
			if st, _ := procState(k); st != "" && st != "Z" && st != "X" {
				return fmt.Errorf("backend %d still alive (state %s)", k, st)
			}
		}
		return nil
	})
}

// procState returns the state letter and parent pid of process pid ("" if
// there is no such process).
func procState(pid int) (string, int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// pid (comm) state ppid ...; comm may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return f[0], ppid
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid := procState(p); ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// pgbenchRuns runs pgbench again and again until stop, and adds up the
// transactions each run reported processed.
type pgbenchRuns struct {
	processed atomic.Int64 // transactions pgbench reported completed
	runs      atomic.Int64
	failed    atomic.Int64 // runs that ended in an error (killed servers)
	done      chan struct{}
}

var pgbenchProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

func (s *pgServer) startPgbench(t *testing.T, clients int, stop <-chan struct{}) *pgbenchRuns {
	r := &pgbenchRuns{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		failing := 0 // failed runs in a row
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			cmd := s.client(ctx, "pgbench", "-n", "-c", strconv.Itoa(clients), "-j", "2", "-T", "8", "postgres")
			out, err := cmd.CombinedOutput()
			cancel()
			r.runs.Add(1)
			if mm := pgbenchProcessed.FindSubmatch(out); mm != nil {
				n, _ := strconv.Atoi(string(mm[1]))
				r.processed.Add(int64(n))
			}
			if err != nil {
				// Expected while servers are killed; log the first of a
				// streak of failures only.
				if r.failed.Add(1); failing == 0 {
					t.Logf("pgbench run ended with %v: %s", err, tailLines(string(out), 2))
				}
				failing++
				select { // back off while the server is down
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				continue
			}
			if failing > 0 {
				t.Logf("pgbench completed a run again after %d failed ones", failing)
			}
			failing = 0
		}
	}()
	return r
}

// ackLoop inserts ids 1, 2, ... into table acked, one transaction each
// (autocommit, synchronous_commit=on), and records every id whose COMMIT
// returned success.
type ackLoop struct {
	mu    sync.Mutex
	acked []int
	n     atomic.Int64
	done  chan struct{}
}

func (s *pgServer) startAckLoop(stop <-chan struct{}) *ackLoop {
	a := &ackLoop{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for id := 1; ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.psql(30*time.Second, fmt.Sprintf("INSERT INTO acked VALUES (%d)", id)); err == nil {
				a.mu.Lock()
				a.acked = append(a.acked, id)
				a.mu.Unlock()
				a.n.Add(1)
				continue
			}
			select { // back off while the server is down
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return a
}

// waitAcked waits until n more ids are acknowledged.
func (a *ackLoop) waitAcked(t *testing.T, s *pgServer, n int64, what string) {
	t.Helper()
	start := a.n.Load()
	testutil.WaitFor(t, 3*time.Minute, what, func() error {
		if got := a.n.Load() - start; got < n {
			return fmt.Errorf("%d of %d inserts committed; server log tail:\n%s", got, n, tailLines(s.log(), 5))
		}
		return nil
	})
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestAppPostgres runs PostgreSQL 15 with its data directory on a mount of
// a cluster with two volume servers at replication 001 and three filers.
// While pgbench runs and a client commits ids one transaction at a time,
// postgres is SIGKILLed (started again, it must recover by itself), then a
// volume server and then the filer leader are SIGKILLed and restarted.
// Afterwards, following a clean restart: every id whose COMMIT succeeded
// is present, pg_amcheck finds no corruption in heaps or indexes, pgbench's
// history holds at least every transaction it reported, and the TPC-B
// balances agree across accounts, tellers, branches and history.
func TestAppPostgres(t *testing.T) {
	for _, b := range []string{"initdb", "pg_ctl", "postgres", "pgbench", "pg_amcheck", "psql"} {
		needApps(t, "postgresql-15", filepath.Join(pgBinDir, b))
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run postgres as the user postgres")
	}
	uid, gid := pgUser(t)
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 2, Filers: 3, Replication: "001"})
	checkFilerStateAtEnd(t, c)
	m := startAppMount(t, c)
	// t.TempDir's parent is private to root: let postgres reach the mount.
	if err := os.Chmod(filepath.Dir(m.Point), 0o755); err != nil {
		t.Fatal(err)
	}
	local, err := os.MkdirTemp("", "cairn-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(local) })
	s := &pgServer{t: t, data: filepath.Join(m.Point, "pgdata"), sock: local,
		port: 20000 + rand.IntN(30000), logFile: filepath.Join(local, "postgres.log"), uid: uid, gid: gid}
	for _, d := range []string{local, s.data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(uid), int(gid)); err != nil {
			t.Fatalf("chown %s to postgres: %v", d, err)
		}
	}

	// --no-sync: initdb's final fsync of its ~1000 files would take half a
	// minute; the mount stores every file at close (close reports errors)
	// and postgres fsyncs what it relies on itself from then on.
	start := time.Now()
	if out, err := s.pgRun(5*time.Minute, "initdb", "-D", s.data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--data-checksums", "--no-sync"); err != nil {
		t.Fatalf("initdb on the mount: %v\n%s", err, out)
	}
	t.Logf("initdb took %v", time.Since(start).Round(time.Millisecond))
	conf := fmt.Sprintf("\nlisten_addresses = ''\nunix_socket_directories = '%s'\nport = %d\n"+
		"fsync = on\nsynchronous_commit = on\nfull_page_writes = on\nwal_sync_method = fdatasync\n"+
		"shared_buffers = 32MB\nmax_connections = 40\ncheckpoint_timeout = 30s\nmax_wal_size = 96MB\n"+
		"restart_after_crash = on\nlog_checkpoints = on\n", s.sock, s.port)
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close postgresql.conf on the mount: %v", err)
	}
	t.Cleanup(func() {
		if s.running() {
			s.crash()
		}
		if t.Failed() {
			t.Logf("---- postgres log\n%s", s.log())
		}
	})
	s.start()
	s.mustPsql("CREATE TABLE acked (id integer PRIMARY KEY)")
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	out, err := s.client(ctx, "pgbench", "-i", "-s", "2", "postgres").CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	t.Logf("pgbench -i -s 2 took %v", time.Since(start).Round(time.Millisecond))

	stop := make(chan struct{})
	bench := s.startPgbench(t, 4, stop)
	acks := s.startAckLoop(stop)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			<-bench.done
			<-acks.done
		}
	}
	defer stopLoad()
	acks.waitAcked(t, s, 30, "inserts to commit before any fault")

	// 1. postgres itself crashes; starting it again must recover it.
	s.crash()
	t.Logf("postgres SIGKILLed with its backends after %d acknowledged inserts", acks.n.Load())
	s.start()
	acks.waitAcked(t, s, 30, "inserts to commit after postgres recovered")

	// restartIfDown starts postgres again if it stopped (a PANIC on an
	// fsync error is the correct reaction to storage that failed).
	restartIfDown := func(after string) {
		t.Helper()
		if s.running() {
			if _, err := s.psql(time.Minute, "SELECT 1"); err == nil {
				t.Logf("postgres stayed up through %s", after)
				return
			}
			// Alive but not answering (in crash recovery): wait for it.
			testutil.WaitFor(t, 3*time.Minute, "postgres to answer after "+after, func() error {
				if !s.running() {
					return nil
				}
				_, err := s.psql(30*time.Second, "SELECT 1")
				return err
			})
			if s.running() {
				t.Logf("postgres recovered by itself after %s", after)
				return
			}
		}
		t.Logf("postgres stopped after %s; log tail:\n%s", after, tailLines(s.log(), 8))
		s.start()
	}

	// 2. A volume server dies and comes back.
	v := c.Volumes[1]
	v.Kill()
	t.Logf("%s SIGKILLed after %d acknowledged inserts", v.Name, acks.n.Load())
	v.Start(t)
	appWaitHealthy(t, c)
	restartIfDown("a volume server was killed")
	acks.waitAcked(t, s, 30, "inserts to commit after the volume server came back")

	// 3. The filer leader dies and comes back.
	leader := c.WaitFilerLeader(t)
	leader.Kill()
	t.Logf("filer leader %s SIGKILLed after %d acknowledged inserts", leader.Name, acks.n.Load())
	c.WaitFilerLeader(t)
	leader.Start(t)
	appWaitHealthy(t, c)
	restartIfDown("the filer leader was killed")
	acks.waitAcked(t, s, 30, "inserts to commit after the filer leader came back")
	t.Logf("pgbench ran %d times (%d ended in errors) and reported %d transactions", bench.runs.Load(), bench.failed.Load(), bench.processed.Load())
	stopLoad()

	// A clean restart, then the checks.
	if !s.running() {
		s.start()
	}
	s.stop()
	s.start()

	acks.mu.Lock()
	want := append([]int{}, acks.acked...)
	acks.mu.Unlock()
	have := map[int]bool{}
	for _, l := range strings.Fields(s.mustPsql("SELECT id FROM acked")) {
		id, _ := strconv.Atoi(l)
		have[id] = true
	}
	lost := 0
	for _, id := range want {
		if !have[id] {
			lost++
			if lost <= 10 {
				t.Errorf("id %d: its COMMIT succeeded but it is not in table acked", id)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged commits lost", lost, len(want))
	}
	t.Logf("all %d acknowledged commits present (%d rows)", len(want), len(have))

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
	out, err = s.client(ctx, "pg_amcheck", "--all", "--install-missing", "--heapallindexed", "--parent-check").CombinedOutput()
	cancel()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("pg_amcheck: %v\n%s", err, out)
	}

	history, _ := strconv.Atoi(s.mustPsql("SELECT count(*) FROM pgbench_history"))
	reported := int(bench.processed.Load())
	if history < reported {
		t.Fatalf("pgbench_history has %d rows but pgbench reported %d transactions processed", history, reported)
	}
	// A run cut short may have committed up to one transaction per client
	// that it never reported.
	if slack := 4 * int(bench.runs.Load()); history > reported+slack {
		t.Fatalf("pgbench_history has %d rows, more than the %d reported plus %d in flight", history, reported, slack)
	}
	sums := s.mustPsql("SELECT (SELECT coalesce(sum(abalance),0) FROM pgbench_accounts) || ' ' || " +
		"(SELECT coalesce(sum(tbalance),0) FROM pgbench_tellers) || ' ' || " +
		"(SELECT coalesce(sum(bbalance),0) FROM pgbench_branches) || ' ' || " +
		"(SELECT coalesce(sum(delta),0) FROM pgbench_history)")
	if f := strings.Fields(sums); len(f) != 4 || f[0] != f[1] || f[1] != f[2] || f[2] != f[3] {
		t.Fatalf("TPC-B balances disagree (accounts tellers branches history): %s", sums)
	}
	t.Logf("pgbench: %d transactions reported, %d in history, balances %s", reported, history, sums)
	s.stop()
}
