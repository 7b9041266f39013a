package shell

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/cairn-storage/cairn/csi"
)

func TestCSIVolumes(t *testing.T) {
	c := cluster(t)
	d, err := csi.New(csi.Config{Mode: csi.ModeController, Filers: c.FilerAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rw := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	vol := unique("shellvol")
	if _, err := d.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: vol, VolumeCapabilities: []*csipb.VolumeCapability{rw},
		CapacityRange: &csipb.CapacityRange{RequiredBytes: 8 << 20}}); err != nil {
		t.Fatal(err)
	}
	putFile(t, "/csi/"+vol+"/data", make([]byte, 3000))
	snap := unique("shellsnap")
	if _, err := d.CreateSnapshot(ctx, &csipb.CreateSnapshotRequest{Name: snap, SourceVolumeId: vol}); err != nil {
		t.Fatal(err)
	}
	clone := unique("shellclone")
	if _, err := d.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: clone, VolumeCapabilities: []*csipb.VolumeCapability{rw},
		VolumeContentSource: &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Snapshot{
			Snapshot: &csipb.VolumeContentSource_SnapshotSource{SnapshotId: snap}}}}); err != nil {
		t.Fatal(err)
	}

	var all []CSIVolumeJSON
	mustJSON(t, &all, "csi.volumes")
	byID := map[string]CSIVolumeJSON{}
	for _, v := range all {
		byID[v.ID] = v
	}
	v, ok := byID[vol]
	if !ok || v.CapacityBytes != 8<<20 || v.UsedBytes != 3000 || v.UsedInodes != 2 || len(v.Snapshots) != 1 || v.Snapshots[0].ID != snap || v.Path != "/csi/"+vol {
		t.Fatalf("volume %s: %+v (all: %+v)", vol, v, all)
	}
	cl, ok := byID[clone]
	if !ok || cl.Source != "snapshot:"+snap || cl.UsedBytes != 3000 || len(cl.Snapshots) != 0 {
		t.Fatalf("clone %s: %+v", clone, cl)
	}
	for id := range byID {
		if strings.HasPrefix(id, ".") {
			t.Fatalf("internal entry %q listed", id)
		}
	}

	text := mustRun(t, "-c", "csi.volumes "+vol)
	if !strings.Contains(text, vol) || !strings.Contains(text, "8.0 MiB") || !strings.Contains(text, "snapshot "+snap+" of "+vol) || strings.Contains(text, clone) {
		t.Fatalf("text:\n%s", text)
	}
	var one []CSIVolumeJSON
	mustJSON(t, &one, "csi.volumes "+clone)
	if len(one) != 1 || one[0].ID != clone {
		t.Fatalf("one volume: %+v", one)
	}
	_, errs, code := runShell(t, "-c", "csi.volumes nosuchvolume")
	if code != 1 || !strings.Contains(errs, "no such CSI volume") {
		t.Fatalf("unknown volume: exit %d %q", code, errs)
	}
	b, _ := json.Marshal(v)
	t.Logf("csi.volumes entry: %s", b)
}
