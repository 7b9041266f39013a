package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/testcluster"
)

const sqliteBin = "/usr/bin/sqlite3"

// startSQLite starts one sqlite3 shell on db that reads SQL from a pipe;
// -bail makes it exit at the first failed statement, so a line printed
// after a COMMIT means that COMMIT succeeded.
func startSQLite(t *testing.T, db string) *pipeProc {
	t.Helper()
	return startPipeProc(t, exec.Command(sqliteBin, "-bail", "-batch", db))
}

// sqliteQuery runs one sqlite3 process to completion and returns stdout.
func sqliteQuery(t *testing.T, db, sql string) string {
	t.Helper()
	cmd := exec.Command(sqliteBin, "-bail", "-batch", db)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("sqlite3 %s: %v\nstdout: %s\nstderr: %s", db, err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// sqliteCheck asserts PRAGMA integrity_check says ok and returns the ids
// of table t, in order.
func sqliteCheck(t *testing.T, db string) []int {
	t.Helper()
	if got := sqliteQuery(t, db, "PRAGMA integrity_check;"); got != "ok" {
		t.Fatalf("PRAGMA integrity_check of %s: %q, want ok", db, got)
	}
	out := sqliteQuery(t, db, "SELECT id FROM t ORDER BY id;")
	var ids []int
	for _, l := range strings.Fields(out) {
		id, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("id %q: %v", l, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// expectLine reads lines until one equals want, failing on anything else.
func expectLine(t *testing.T, p *pipeProc, want string, timeout time.Duration) {
	t.Helper()
	l, err := p.next(timeout)
	if err != nil {
		t.Fatalf("waiting for %q from sqlite3: %v", want, err)
	}
	if l != want {
		t.Fatalf("sqlite3 printed %q, want %q; stderr: %s", l, want, p.stderr())
	}
}

// TestAppSQLite runs the sqlite3 shell on a mount: thousands of small
// transactions in rollback-journal and WAL mode, VACUUM and an integrity
// check; then SIGKILLs of sqlite3 in the middle of a long transaction and
// of a commit loop, and a SIGKILL of the mount itself under a commit loop.
// After each, the database passes PRAGMA integrity_check and holds every
// transaction sqlite reported committed, and nothing of the ones it did
// not commit.
func TestAppSQLite(t *testing.T) {
	needApps(t, "sqlite3", sqliteBin)
	c := testcluster.Start(t, testcluster.Options{Masters: 1, Volumes: 1, Filers: 1})
	checkFilerStateAtEnd(t, c)
	m := startAppMount(t, c)
	// Thousands of transactions in all: WAL commits cost fewer fsyncs, so
	// it runs twice as many.
	base := envInt("CAIRN_SQLITE_TXNS", 800)
	count := map[string]int{"DELETE": base, "WAL": 2 * base}

	for _, mode := range []string{"DELETE", "WAL"} {
		n := count[mode]
		t.Run("small-transactions-"+mode, func(t *testing.T) {
			db := filepath.Join(m.Point, "small-"+mode+".db")
			start := time.Now()
			p := startSQLite(t, db)
			p.send(fmt.Sprintf("PRAGMA journal_mode=%s;\nPRAGMA synchronous=FULL;\n"+
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);\n", mode))
			expectLine(t, p, strings.ToLower(mode), 30*time.Second)
			// Feed every transaction at once; sqlite3 runs them one after
			// the other and prints a line after each COMMIT.
			go func() {
				var b strings.Builder
				for i := 1; i <= n; i++ {
					fmt.Fprintf(&b, "BEGIN;\nINSERT INTO t VALUES(%d, randomblob(%d));\nCOMMIT;\nSELECT 'c', %d;\n", i, 100+i%700, i)
					if i%100 == 0 || i == n {
						if p.send(b.String()) != nil {
							return
						}
						b.Reset()
					}
				}
			}()
			for i := 1; i <= n; i++ {
				expectLine(t, p, fmt.Sprintf("c|%d", i), 60*time.Second)
			}
			p.send("VACUUM;\nPRAGMA integrity_check;\nSELECT count(*), sum(id) FROM t;\n")
			expectLine(t, p, "ok", 120*time.Second)
			expectLine(t, p, fmt.Sprintf("%d|%d", n, n*(n+1)/2), 60*time.Second)
			if err := p.wait(60 * time.Second); err != nil {
				t.Fatalf("sqlite3 exit: %v; stderr: %s", err, p.stderr())
			}
			t.Logf("%s mode: %d transactions and VACUUM in %v", mode, n, time.Since(start).Round(time.Millisecond))
			if ids := sqliteCheck(t, db); len(ids) != n || ids[0] != 1 || ids[n-1] != n {
				t.Fatalf("after reopening: %d rows, want %d", len(ids), n)
			}
		})
	}

	// A second mount of the same tree has none of the first one's state:
	// it sees only what reached the filer and the volume servers.
	t.Run("second-mount-sees-all", func(t *testing.T) {
		m2 := c.StartMount(t, "/")
		for _, mode := range []string{"DELETE", "WAL"} {
			if ids := sqliteCheck(t, filepath.Join(m2.Point, "small-"+mode+".db")); len(ids) != count[mode] {
				t.Fatalf("%s database through a second mount: %d rows, want %d", mode, len(ids), count[mode])
			}
		}
	})

	for _, mode := range []string{"DELETE", "WAL"} {
		t.Run("kill-in-long-transaction-"+mode, func(t *testing.T) {
			db := filepath.Join(m.Point, "long-"+mode+".db")
			p := startSQLite(t, db)
			// A tiny page cache makes sqlite write the database file (and
			// with DELETE the journal) while the transaction is open.
			p.send(fmt.Sprintf("PRAGMA journal_mode=%s;\nPRAGMA synchronous=FULL;\nPRAGMA cache_size=5;\n"+
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);\n", mode))
			expectLine(t, p, strings.ToLower(mode), 30*time.Second)
			const committed = 100
			var b strings.Builder
			for i := 1; i <= committed; i++ {
				fmt.Fprintf(&b, "BEGIN;\nINSERT INTO t VALUES(%d, randomblob(3000));\nCOMMIT;\n", i)
			}
			b.WriteString("SELECT 'committed', count(*) FROM t;\n")
			p.send(b.String())
			expectLine(t, p, fmt.Sprintf("committed|%d", committed), 120*time.Second)
			// The long transaction: updates of every committed row and
			// inserts, with a progress line after each statement.
			p.send("BEGIN;\n")
			go func() {
				for i := 1; i <= 100000; i++ {
					s := fmt.Sprintf("UPDATE t SET v = randomblob(3000) WHERE id = %d;\nINSERT INTO t VALUES(%d, randomblob(3000));\nSELECT 'p', %d;\n",
						1+i%committed, 1000000+i, i)
					if p.send(s) != nil {
						return
					}
				}
			}()
			for i := 1; i <= 300; i++ {
				expectLine(t, p, fmt.Sprintf("p|%d", i), 60*time.Second)
			}
			p.kill()
			if _, err := os.Stat(db); err != nil {
				t.Fatal(err)
			}
			ids := sqliteCheck(t, db)
			if len(ids) != committed || ids[0] != 1 || ids[len(ids)-1] != committed {
				t.Fatalf("after SIGKILL inside a transaction: %d rows (first %v, last %v), want exactly the %d committed ones",
					len(ids), firstID(ids), lastID(ids), committed)
			}
		})
	}

	// crashCommitLoop runs a loop of small transactions on db and calls
	// crash once at least 200 are acknowledged (while more are in flight);
	// then every acknowledged transaction must be in the database, and the
	// transactions present must be a prefix of those sent.
	crashCommitLoop := func(t *testing.T, db, mode string, crash func(p *pipeProc)) {
		p := startSQLite(t, db)
		p.send(fmt.Sprintf("PRAGMA journal_mode=%s;\nPRAGMA synchronous=FULL;\n"+
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);\n"+
			"CREATE TABLE counter(n INTEGER NOT NULL);\nINSERT INTO counter VALUES(0);\n", mode))
		expectLine(t, p, strings.ToLower(mode), 30*time.Second)
		const sent = 100000
		go func() {
			var b strings.Builder
			for i := 1; i <= sent; i++ {
				fmt.Fprintf(&b, "BEGIN;\nINSERT INTO t VALUES(%d, randomblob(%d));\nUPDATE counter SET n = n + 1;\nCOMMIT;\nSELECT 'c', %d, changes();\n",
					i, 200+i%3000, i)
				if i%20 == 0 {
					if p.send(b.String()) != nil {
						return
					}
					b.Reset()
				}
			}
		}()
		acked := 0
		for acked < 200 {
			l, err := p.next(60 * time.Second)
			if err != nil {
				t.Fatalf("commit loop: %v", err)
			}
			if l != fmt.Sprintf("c|%d|1", acked+1) {
				t.Fatalf("commit loop printed %q after %d acknowledged transactions", l, acked)
			}
			acked++
		}
		crash(p)
		// Lines printed before the crash are acknowledged commits too.
		for l := range p.lines {
			if l == fmt.Sprintf("c|%d|1", acked+1) {
				acked++
			}
		}
		ids := sqliteCheck(t, db)
		for i, id := range ids {
			if id != i+1 {
				t.Fatalf("after the crash row %d has id %d: the rows present are not the first %d transactions", i, id, len(ids))
			}
		}
		if len(ids) < acked {
			t.Fatalf("after the crash %d rows, but %d transactions were acknowledged committed", len(ids), acked)
		}
		if got := sqliteQuery(t, db, "SELECT n FROM counter;"); got != strconv.Itoa(len(ids)) {
			t.Fatalf("counter is %s but %d rows are present: a transaction was torn", got, len(ids))
		}
		t.Logf("%d transactions acknowledged, %d present after the crash", acked, len(ids))
	}

	t.Run("kill-sqlite-in-commit-loop", func(t *testing.T) {
		for _, mode := range []string{"DELETE", "WAL"} {
			crashCommitLoop(t, filepath.Join(m.Point, "loop-"+mode+".db"), mode, func(p *pipeProc) { p.kill() })
		}
	})

	// The mount itself is SIGKILLed under the commit loop: nothing but
	// what sqlite fsynced may be relied on, and sqlite must find a
	// consistent database (hot journal or WAL recovery) on a new mount.
	t.Run("kill-mount-in-commit-loop", func(t *testing.T) {
		for _, mode := range []string{"DELETE", "WAL"} {
			crashCommitLoop(t, filepath.Join(m.Point, "mountkill-"+mode+".db"), mode, func(p *pipeProc) {
				m.Kill()
				// sqlite3 must now fail (ENOTCONN or EIO) and exit by -bail.
				select {
				case <-p.done:
				case <-time.After(60 * time.Second):
					t.Errorf("sqlite3 still running 60s after its mount was killed")
					p.kill()
				}
				appRemount(t, m)
			})
		}
	})
}

func firstID(ids []int) any {
	if len(ids) == 0 {
		return "none"
	}
	return ids[0]
}

func lastID(ids []int) any {
	if len(ids) == 0 {
		return "none"
	}
	return ids[len(ids)-1]
}
