package nomade2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pgClient runs PostgreSQL's client programs against the example job over
// TCP, as the superuser postgres with the password from the Nomad variable.
type pgClient struct {
	port     int
	password string
}

func (c pgClient) env() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(c.port),
		"PGUSER=postgres", "PGDATABASE=postgres", "PGPASSWORD=" + c.password, "PGCONNECT_TIMEOUT=10"}
}

func (c pgClient) run(timeout time.Duration, prog string, args ...string) (string, error) {
	return runCmd(timeout, c.env(), "", filepath.Join(pgBinDir, prog), args...)
}

// psql runs one SQL string and returns unaligned, tuples-only output.
func (c pgClient) psql(sql string) (string, error) {
	out, err := c.run(2*time.Minute, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	return strings.TrimSpace(out), err
}

// postgres: the shipped PostgreSQL job (exec driver, as the volume's
// owner) initialises its data on the volume; pgbench runs; `nomad alloc
// restart` brings it back with its data; a node plugin restart does not
// disturb it; pg_amcheck finds no corruption.
func (e *e2e) postgres() {
	t, a := e.t, e.a
	b := make([]byte, 18)
	rand.Read(b)
	pg := pgClient{port: freePort(t), password: hex.EncodeToString(b)}
	a.mustNomad("var", "put", "-force", "nomad/jobs/postgres", "password="+pg.password)
	a.runJob(jobFile(t, "exec/postgres.nomad.hcl"), map[string]string{
		"volume_id": "cairn-db", "user": "postgres", "pg_bin": pgBinDir, "port": strconv.Itoa(pg.port),
	})
	al := a.waitRunning("postgres", 1, 0, 10*time.Minute)[0]
	st := time.Now()
	ready := func(what string) string {
		var started string
		a.waitFor(15*time.Minute, "PostgreSQL to accept connections "+what, func() error {
			var all []alloc
			all, _ = a.allocs("postgres")
			for _, x := range all {
				if x.ClientStatus == "failed" {
					t.Fatalf("postgres failed: %s\n%s", x.describe(), a.taskLogs(x.ID))
				}
			}
			out, err := pg.psql("SELECT pg_postmaster_start_time()")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			started = out
			return nil
		})
		return started
	}
	started := ready("(initdb on the volume first)")
	t.Logf("PostgreSQL up after %v (initdb with fsync on the volume included)", time.Since(st).Round(time.Second))
	// The data directory is on the volume, owned by postgres, and the
	// volume is the mount Nomad published into the task.
	if out, err := pg.psql("SHOW data_directory"); err != nil || out != "/srv/postgres/pgdata" {
		t.Fatalf("data_directory: %q %v", out, err)
	}

	mustPG := func(timeout time.Duration, prog string, args ...string) string {
		t.Helper()
		out, err := pg.run(timeout, prog, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s\n%s", prog, strings.Join(args, " "), err, tail(out, 3000), a.taskLogs(al.ID))
		}
		return out
	}
	st = time.Now()
	mustPG(10*time.Minute, "pgbench", "-i", "-s", "2")
	out := mustPG(10*time.Minute, "pgbench", "-n", "-c", "4", "-j", "2", "-T", "20")
	t.Logf("pgbench -i -s 2 and a 20 s run took %v: %s", time.Since(st).Round(time.Second), tailLine(out, "tps"))
	count := func() int {
		out, err := pg.psql("SELECT count(*) FROM pgbench_history")
		if err != nil {
			t.Fatalf("count pgbench_history: %v %s", err, out)
		}
		n, _ := strconv.Atoi(out)
		return n
	}
	h := count()
	if h == 0 {
		t.Fatalf("pgbench committed no transaction")
	}

	a.mustNomad("alloc", "restart", al.ID)
	var restarted string
	a.waitFor(10*time.Minute, "PostgreSQL to restart", func() error {
		out, err := pg.psql("SELECT pg_postmaster_start_time()")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out == started {
			return fmt.Errorf("still the postmaster started at %s", out)
		}
		restarted = out
		return nil
	})
	if n := count(); n != h {
		t.Fatalf("after nomad alloc restart pgbench_history has %d rows, had %d", n, h)
	}
	t.Logf("after nomad alloc restart: postmaster started %s, %d history rows as before", restarted, h)

	nodeAlloc := a.waitRunning("cairn-csi-node", 1, 0, time.Minute)[0]
	a.mustNomad("alloc", "restart", nodeAlloc.ID)
	e.waitPluginHealthy()
	mustPG(10*time.Minute, "pgbench", "-n", "-c", "2", "-j", "2", "-T", "10")
	if s := ready("after the node plugin restart"); s != restarted {
		t.Fatalf("PostgreSQL restarted during the node plugin restart (postmaster start %s, was %s)", s, restarted)
	}
	if n := count(); n <= h {
		t.Fatalf("pgbench after the node plugin restart added nothing (%d rows, had %d)", n, h)
	}

	st = time.Now()
	out = mustPG(15*time.Minute, "pg_amcheck", "--all", "--install-missing", "--heapallindexed", "--parent-check")
	t.Logf("pg_amcheck clean in %v %s", time.Since(st).Round(time.Second), strings.TrimSpace(out))
	a.stopJob("postgres", 5*time.Minute)
	e.waitUnclaimed("cairn-db")
	if fi, err := os.Stat(filepath.Join(a.dataDir, "client", "csi", "node", "cairn", "staging", "cairn-db")); err == nil && fi.IsDir() {
		if m := mountsUnder(filepath.Join(a.dataDir, "client", "csi", "node", "cairn", "staging", "cairn-db")); len(m) > 0 {
			t.Fatalf("volume still staged after the job stopped: %v", m)
		}
	}
}

// tailLine is the last line of out containing word.
func tailLine(out, word string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], word) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}
