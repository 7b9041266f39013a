package nomade2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The test's own workloads: small exec jobs that use a cairn volume, run
// as the volume's owner. They are the applications of the test, not
// shipped jobspecs (those are run as shipped, with -var flags).

// workloadJob writes an exec job using volume volID at /data that runs
// script with /bin/sh as user, and returns its path. kind is "service" or
// "batch"; a service job is never restarted or rescheduled by Nomad, so
// any failure of the script shows as a failed allocation.
func workloadJob(t *testing.T, dir, name, kind, volID, user, script string, templates map[string]string) string {
	t.Helper()
	var tpl strings.Builder
	for dest, data := range templates {
		fmt.Fprintf(&tpl, "      template {\n        destination = %q\n        data = %q\n      }\n", "local/"+dest, data)
	}
	// $$ and %% keep HCL from interpolating the shell script.
	script = strings.ReplaceAll(strings.ReplaceAll(script, "${", "$${"), "%{", "%%{")
	hcl := fmt.Sprintf(`job %q {
  datacenters = ["*"]
  type        = %q

  group "w" {
    volume "data" {
      type            = "csi"
      source          = %q
      access_mode     = "single-node-writer"
      attachment_mode = "file-system"
    }

    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "w" {
      driver = "exec"
      user   = %q

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

%s
      config {
        command = "/bin/sh"
        args    = ["-c", %q]
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, name, kind, volID, user, tpl.String(), script)
	p := filepath.Join(dir, name+".nomad.hcl")
	if err := os.WriteFile(p, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writerScript writes /data/e2e/seq.txt (seq from..to) and rand.bin (the
// base64 test data from the template), fsyncs both and the directory, then
// says so and waits to be stopped.
const writerScript = `set -e
mkdir -p /data/e2e
seq %d %d | dd of=/data/e2e/seq.txt conv=fsync status=none
base64 -d "$NOMAD_TASK_DIR/rand.b64" | dd of=/data/e2e/rand.bin conv=fsync status=none
sync /data/e2e
echo WROTE-OK
trap 'exit 0' TERM INT
while :; do sleep 1; done
`

// readerScript prints the SHA-256 of every file it is given (relative to
// /data/e2e), and of the append log check, then READ-OK.
const readerScript = `set -e
cd /data/e2e
sha256sum seq.txt rand.bin
if [ -e append.log ]; then
  awk '$0 != sprintf("rec %08d", NR-1) { print "BAD line " NR ": " $0; exit 1 } END { print "APPEND-LINES " NR }' append.log
fi
echo READ-OK
`

// statterScript calls statfs on the volume, then opens and reads a file of
// it 50 times with the shell's own read (no process per read, so the mount
// always has a request in hand), over and over; any failure is reported
// and ends the job. It reports progress.
const statterScript = `i=0
trap 'echo "STOPPED $i"; exit 0' TERM INT
while :; do
  stat -f /data >/dev/null || { echo "IOERR statfs $i" >&2; exit 3; }
  j=0
  while [ $j -lt 50 ]; do
    read -r line < /data/e2e/append.log || { echo "IOERR read $i" >&2; exit 4; }
    j=$((j+1))
  done
  i=$((i+1))
  if [ $((i % 20)) -eq 0 ]; then echo "PROGRESS $i"; fi
done
`

// appenderScript appends one record at a time and fsyncs the file after
// each; any failed append or fsync is reported and ends the job (so the
// allocation fails). It reports progress, and on SIGTERM how many records
// were fsynced.
const appenderScript = `i=0
trap 'echo "STOPPED $i"; exit 0' TERM INT
while :; do
  printf 'rec %08d\n' "$i" >> /data/e2e/append.log || { echo "IOERR append $i" >&2; exit 3; }
  sync /data/e2e/append.log || { echo "IOERR fsync $i" >&2; exit 4; }
  i=$((i+1))
  if [ $((i % 10)) -eq 0 ]; then echo "PROGRESS $i"; fi
done
`
