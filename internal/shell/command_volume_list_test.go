package shell

import (
	"fmt"
	"strings"
	"testing"
)

func TestVolumeList(t *testing.T) {
	fresh(t, "/vlist")
	c := cluster(t)
	putFile(t, "/vlist/a", []byte("volume list test data"))
	var l VolumeListJSON
	mustJSON(t, &l, "volume.list")
	if len(l.DataCenters) != 1 || l.DataCenters[0].Name != "dc1" || len(l.DataCenters[0].Racks) != 1 {
		t.Fatalf("topology: %+v", l)
	}
	rack := l.DataCenters[0].Racks[0]
	if rack.Name != "rack1" || len(rack.Servers) != 2 {
		t.Fatalf("rack: %+v", rack)
	}
	needles := 0
	var vid uint32
	for _, s := range rack.Servers {
		if !s.Alive || s.Error != "" || len(s.Volumes) == 0 {
			t.Fatalf("server %+v", s)
		}
		for _, v := range s.Volumes {
			if v.Replication != "001" || len(v.Replicas) != 2 || v.Primary == "" || !strings.Contains(strings.Join(v.Replicas, ","), s.URL) {
				t.Errorf("volume %+v on %s", v, s.URL)
			}
			if v.Size == 0 || v.GarbageRatio < 0 || v.GarbageRatio > 1 {
				t.Errorf("volume %+v: size or garbage ratio", v)
			}
			needles += int(v.NeedleCount)
			if v.NeedleCount > 0 {
				vid = v.ID
			}
		}
	}
	if needles < 2 { // the file's needle, on both replicas
		t.Fatalf("no needles listed: %+v", rack)
	}

	out := mustRun(t, "-c", fmt.Sprintf("volume.list -volumeId %d", vid))
	for _, want := range []string{"dc dc1", "rack rack1", c.Volumes[0].HTTP, "GARBAGE", "writable"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}
