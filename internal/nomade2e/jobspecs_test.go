package nomade2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The variable settings each jobspec is validated with, besides its
// defaults: the ones that switch blocks on or off.
var validateVariants = []map[string]string{
	{"security_var": "nomad/jobs/cairn", "service_provider": "consul"},
	{"holder_socket": ""},
}

// TestJobspecsValidate validates every shipped jobspec, in both flavours,
// with `nomad job validate` (defaults and the variants above), checks that
// both flavours ship the same jobs, and parses every volume spec with
// `nomad volume create` (against an address where no agent listens, so
// the spec is parsed and decoded and nothing is created).
func TestJobspecsValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Nomad binary (built once per machine); skipped with -short")
	}
	bin := nomadBinary(t)
	// No agent listens here: validate falls back to local validation and
	// volume create stops after decoding the spec.
	addr := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	env := cliEnv(addr)

	flavours := map[string][]string{}
	for _, fl := range []string{"exec", "docker"} {
		files, err := filepath.Glob(jobFile(t, filepath.Join(fl, "*.nomad.hcl")))
		if err != nil || len(files) == 0 {
			t.Fatalf("no jobspecs in nomad-jobs/%s: %v", fl, err)
		}
		for _, f := range files {
			flavours[fl] = append(flavours[fl], filepath.Base(f))
			src := readFile(f)
			variants := []map[string]string{nil}
			for _, v := range validateVariants {
				applies := true
				for k := range v {
					applies = applies && strings.Contains(src, fmt.Sprintf("variable %q", k))
				}
				if applies {
					variants = append(variants, v)
				}
			}
			for _, v := range variants {
				args := []string{"job", "validate"}
				for k, val := range v {
					args = append(args, "-var", k+"="+val)
				}
				out, err := runCmd(2*time.Minute, env, "", bin, append(args, f)...)
				if err != nil || !strings.Contains(out, "Job validation successful") {
					t.Errorf("nomad job validate %s %v: %v\n%s", filepath.Join(fl, filepath.Base(f)), v, err, out)
				} else {
					t.Logf("valid: %s/%s %v", fl, filepath.Base(f), v)
				}
			}
		}
	}
	if !slices.Equal(flavours["exec"], flavours["docker"]) {
		t.Errorf("the flavours ship different jobs: exec %v, docker %v", flavours["exec"], flavours["docker"])
	}

	// The validation does reject a broken setting (a port that is no number).
	out, err := runCmd(2*time.Minute, env, "", bin, "job", "validate", "-var", "master_port=ninety",
		jobFile(t, "exec/cairn-server.nomad.hcl"))
	if err == nil {
		t.Errorf("nomad job validate accepted master_port=ninety:\n%s", out)
	}

	vols, _ := filepath.Glob(jobFile(t, "volumes/*.volume.hcl"))
	if len(vols) < 2 {
		t.Fatalf("want at least the database and the shared volume spec, have %v", vols)
	}
	for _, f := range vols {
		out, err := runCmd(2*time.Minute, env, "", bin, "volume", "create", f)
		if err == nil || !strings.Contains(out, "Error creating volume") {
			t.Errorf("volume spec %s did not parse (want only the failure to reach the agent): %v\n%s", filepath.Base(f), err, out)
		} else {
			t.Logf("parsed: volumes/%s", filepath.Base(f))
		}
	}
	// And a broken volume spec is refused at decoding.
	bad := filepath.Join(t.TempDir(), "bad.volume.hcl")
	if err := os.WriteFile(bad, []byte("id = \"x\"\ntype = \"csi\"\nplugin_id = \"cairn\"\ncapacity_min = \"lots\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCmd(2*time.Minute, env, "", bin, "volume", "create", bad); strings.Contains(out, "Error creating volume") {
		t.Errorf("a volume spec with capacity_min = \"lots\" got past decoding:\n%s", out)
	}
}
