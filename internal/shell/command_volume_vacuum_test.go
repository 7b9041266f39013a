package shell

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestVolumeVacuum(t *testing.T) {
	c := cluster(t)
	a, err := c.Assign("replication=001&collection=" + unique("vacuumtest"))
	if err != nil {
		t.Fatal(err)
	}
	vid := strings.Split(a.Fid, ",")[0]
	if err := c.Put(a.URL, a.Fid, bytes.Repeat([]byte("garbage "), 4096)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+a.URL+"/"+a.Fid, nil)
	resp, err := c.Client.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete %s: %v %v", a.Fid, err, resp)
	}
	resp.Body.Close()

	var rs []VacuumJSON
	// A threshold above the garbage ratio skips every replica.
	mustJSON(t, &rs, fmt.Sprintf("volume.vacuum -volumeId %s -garbageThreshold 1", vid))
	if len(rs) != 2 || rs[0].Compacted || rs[1].Compacted {
		t.Fatalf("threshold 1: %+v, want two skipped replicas", rs)
	}
	mustJSON(t, &rs, fmt.Sprintf("volume.vacuum -volumeId %s -garbageThreshold 0", vid))
	if len(rs) != 2 || rs[0].Server == rs[1].Server {
		t.Fatalf("want one result per replica, got %+v", rs)
	}
	for _, r := range rs {
		if !r.Compacted || r.Error != "" || r.BytesAfter >= r.BytesBefore || fmt.Sprint(r.VolumeID) != vid {
			t.Errorf("vacuum result %+v: want compacted with fewer bytes", r)
		}
	}
	out, errs, code := runShell(t, "-c", "volume.vacuum -volumeId 9999")
	if code != 1 || !strings.Contains(errs, "volume 9999 does not exist") {
		t.Fatalf("unknown volume: exit %d\n%s%s", code, out, errs)
	}
	out = mustRun(t, "-c", "volume.vacuum -volumeId "+vid)
	if !strings.Contains(out, "BEFORE") || !strings.Contains(out, "reclaimed") {
		t.Fatalf("text output:\n%s", out)
	}
}
