package shell

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestFsCheck(t *testing.T) {
	fresh(t, "/check")
	putFile(t, "/check/a", make([]byte, 1000))
	putFile(t, "/check/d/b", []byte("hello"))
	var out []FsCheckJSON
	mustJSON(t, &out, "fs.check")
	if len(out) != 1 || out[0].Filer != "leader" || out[0].Error != "" || len(out[0].Problems) != 0 {
		t.Fatalf("fs.check: %+v", out)
	}
	// The root, /check, a, d, b at least; a and b have data.
	if r := out[0]; r.Inodes < 5 || r.Pieces < 2 || r.Needles < 2 || r.ApplyIndex == 0 {
		t.Fatalf("fs.check counted %+v", r.CheckReport)
	}
	mustJSON(t, &out, "fs.check -all")
	if len(out) != len(cluster(t).Filers) || out[0].Filer != cluster(t).Filers[0].HTTP || len(out[0].Problems) != 0 || out[0].Inodes < 5 {
		t.Fatalf("fs.check -all: %+v", out)
	}
	if text := mustRun(t, "-c", "fs.check"); !strings.Contains(text, "leader: ok (log index ") {
		t.Fatalf("fs.check text: %q", text)
	}
	// A sound state has nothing to repair. (Damaged pieces and their
	// repair are tested in the filer package, which can damage a state.)
	mustJSON(t, &out, "fs.check -repair")
	if len(out) != 1 || len(out[0].Problems) != 0 || len(out[0].Repaired) != 0 || len(out[0].Repairable) != 0 {
		t.Fatalf("fs.check -repair of a sound state: %+v", out)
	}
	if code := Main(context.Background(), []string{"--master", cluster(t).Masters[0].HTTP, "--filer", cluster(t).Filers[0].HTTP,
		"-c", "fs.check -all -repair"}, strings.NewReader(""), io.Discard, io.Discard); code == 0 {
		t.Fatal("fs.check -all -repair succeeded; want a usage error")
	}

	// A filer that does not answer is reported, and the command fails.
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"--master", cluster(t).Masters[0].HTTP, "--filer", "127.0.0.1:1",
		"-c", "fs.check -all"}, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stdout.String(), "127.0.0.1:1: not checked") || !strings.Contains(stderr.String(), "could not be checked") {
		t.Fatalf("fs.check -all with a dead filer: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
}
