package csi_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/cairn-storage/cairn/csi/csitest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(appEnv); dir != "" {
		os.Exit(runApp(dir))
	}
	if dir := os.Getenv(killAppEnv); dir != "" {
		os.Exit(runKillApp(dir))
	}
	csitest.Main(m)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwCap = mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

// createVolume creates a volume of capacity bytes (0: unlimited).
func createVolume(t *testing.T, env *csitest.Env, name string, capacity int64, src *csipb.VolumeContentSource) *csipb.Volume {
	t.Helper()
	req := &csipb.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csipb.VolumeCapability{rwCap}, VolumeContentSource: src}
	if capacity > 0 {
		req.CapacityRange = &csipb.CapacityRange{RequiredBytes: capacity}
	}
	resp, err := env.Controller().CreateVolume(ctxT(t), req)
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.Volume
}

// publish stages and publishes volume id and returns the target path.
func publish(t *testing.T, env *csitest.Env, id string) (staging, target string) {
	t.Helper()
	staging = filepath.Join(env.Dir, "staging", id)
	target = filepath.Join(env.Dir, "target", id)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Node().NodeStageVolume(ctxT(t), &csipb.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwCap}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", id, err)
	}
	if _, err := env.Node().NodePublishVolume(ctxT(t), &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwCap}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", id, err)
	}
	return staging, target
}

// unpublish unpublishes and unstages volume id.
func unpublish(t *testing.T, env *csitest.Env, id, staging, target string) {
	t.Helper()
	if _, err := env.Node().NodeUnpublishVolume(ctxT(t), &csipb.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume %s: %v", id, err)
	}
	if _, err := env.Node().NodeUnstageVolume(ctxT(t), &csipb.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume %s: %v", id, err)
	}
}

// writeFile writes data to path and fsyncs it.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}
