package csi_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/csi/csitest"
)

// TestVolumesIsolated: a volume's mount shows its own subtree only, files
// cannot be renamed or linked into another volume, and volume ids that
// would name another volume's paths ("..", "vb/..", "../csi/vb", the
// plugin's own dot-directories) are refused by every call that takes one,
// with nothing mounted or created.
func TestVolumesIsolated(t *testing.T) {
	env := csitest.Start(t)
	env.StartCSI(t)
	ctx := ctxT(t)
	createVolume(t, env, "va", 1<<20, nil)
	createVolume(t, env, "vb", 1<<20, nil)
	_, ta := publish(t, env, "va")
	_, tb := publish(t, env, "vb")
	writeFile(t, filepath.Join(tb, "secret"), []byte("vb's"))
	writeFile(t, filepath.Join(ta, "mine"), []byte("va's"))

	ents, err := os.ReadDir(ta)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"mine"}) {
		t.Errorf("volume va lists %v, want only its own file", names)
	}
	if err := os.Rename(filepath.Join(ta, "mine"), filepath.Join(tb, "mine")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename from volume va into vb: %v, want EXDEV", err)
	}
	if err := os.Link(filepath.Join(tb, "secret"), filepath.Join(ta, "stolen")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("hard link from volume vb into va: %v, want EXDEV", err)
	}
	// A symlink names a path for the reader's kernel, not for the filer:
	// "/csi/vb/secret" inside va is not vb's file.
	if err := os.Symlink("/csi/vb/secret", filepath.Join(ta, "abs")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(ta, "abs")); err == nil && string(b) == "vb's" {
		t.Error("a symlink in volume va to /csi/vb/secret read vb's file")
	}

	for _, id := range []string{"..", ".", "vb/..", "../csi/vb", "va/../vb", ".trash", "/vb", "vb\x00"} {
		staging := filepath.Join(env.Dir, "staging-bad")
		if err := os.MkdirAll(staging, 0o750); err != nil {
			t.Fatal(err)
		}
		_, err := env.Node().NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwCap})
		if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument {
			t.Errorf("NodeStageVolume(%q): %v, want NotFound or InvalidArgument", id, err)
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(staging, &st); err == nil && st.Type == 0x65735546 {
			t.Errorf("NodeStageVolume(%q) left a FUSE mount at %s", id, staging)
		}
		_, err = env.Controller().CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: id, VolumeCapabilities: []*csipb.VolumeCapability{rwCap}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateVolume(%q): %v, want InvalidArgument", id, err)
		}
		_, err = env.Controller().DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id})
		if err != nil && status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.NotFound {
			t.Errorf("DeleteVolume(%q): %v", id, err)
		}
		_, err = env.Controller().ControllerExpandVolume(ctx, &csipb.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csipb.CapacityRange{RequiredBytes: 1 << 30}})
		if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument {
			t.Errorf("ControllerExpandVolume(%q): %v, want NotFound or InvalidArgument", id, err)
		}
	}
	// Both volumes are intact.
	if got := readFile(t, filepath.Join(tb, "secret")); got != "vb's" {
		t.Errorf("vb/secret: %q", got)
	}
	if got := readFile(t, filepath.Join(ta, "mine")); got != "va's" {
		t.Errorf("va/mine: %q", got)
	}
	resp, err := env.Controller().ListVolumes(ctx, &csipb.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range resp.Entries {
		ids = append(ids, e.Volume.VolumeId)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"va", "vb"}) {
		t.Errorf("volumes after the refused calls: %v, want [va vb]", ids)
	}
}
