package csi_test

import (
	"path/filepath"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/cairn-storage/cairn/csi/csitest"
)

// TestSnapshotContent: write, snapshot, overwrite, clone from the
// snapshot. The clone holds the old bytes and the source the new ones.
// Deleting the source keeps the snapshot and the clone intact.
func TestSnapshotContent(t *testing.T) {
	env := csitest.Start(t)
	env.StartCSI(t)
	ctx := ctxT(t)

	createVolume(t, env, "src", 64<<20, nil)
	srcStaging, srcTarget := publish(t, env, "src")
	writeFile(t, filepath.Join(srcTarget, "data"), []byte("old bytes"))

	snap, err := env.Controller().CreateSnapshot(ctx, &csipb.CreateSnapshotRequest{Name: "snap1", SourceVolumeId: "src"})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	if s := snap.Snapshot; !s.ReadyToUse || s.SourceVolumeId != "src" || s.SizeBytes != int64(len("old bytes")) || s.CreationTime == nil {
		t.Fatalf("snapshot = %v, want ready, source src, %d bytes, a creation time", s, len("old bytes"))
	}
	writeFile(t, filepath.Join(srcTarget, "data"), []byte("new bytes, longer"))

	createVolume(t, env, "clone", 64<<20, &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Snapshot{
		Snapshot: &csipb.VolumeContentSource_SnapshotSource{SnapshotId: "snap1"}}})
	createVolume(t, env, "vclone", 64<<20, &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Volume{
		Volume: &csipb.VolumeContentSource_VolumeSource{VolumeId: "src"}}})
	cloneStaging, cloneTarget := publish(t, env, "clone")
	if got := readFile(t, filepath.Join(cloneTarget, "data")); got != "old bytes" {
		t.Fatalf("clone of the snapshot reads %q, want the old bytes", got)
	}
	if got := readFile(t, filepath.Join(srcTarget, "data")); got != "new bytes, longer" {
		t.Fatalf("source reads %q, want the new bytes", got)
	}
	_, vcloneTarget := publish(t, env, "vclone")
	if got := readFile(t, filepath.Join(vcloneTarget, "data")); got != "new bytes, longer" {
		t.Fatalf("clone of the volume reads %q, want the source's current bytes", got)
	}
	// Writing the clone does not change the source or the snapshot.
	writeFile(t, filepath.Join(cloneTarget, "data"), []byte("clone's own"))

	unpublish(t, env, "src", srcStaging, srcTarget)
	if _, err := env.Controller().DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "src"}); err != nil {
		t.Fatalf("DeleteVolume src: %v", err)
	}
	list, err := env.Controller().ListSnapshots(ctx, &csipb.ListSnapshotsRequest{SourceVolumeId: "src"})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.SnapshotId != "snap1" {
		t.Fatalf("ListSnapshots(source src) after deleting src = %v, %v; want snap1", list, err)
	}
	createVolume(t, env, "clone2", 0, &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Snapshot{
		Snapshot: &csipb.VolumeContentSource_SnapshotSource{SnapshotId: "snap1"}}})
	_, clone2Target := publish(t, env, "clone2")
	if got := readFile(t, filepath.Join(clone2Target, "data")); got != "old bytes" {
		t.Fatalf("a clone of the snapshot made after deleting the source reads %q, want the old bytes", got)
	}
	if got := readFile(t, filepath.Join(cloneTarget, "data")); got != "clone's own" {
		t.Fatalf("clone reads %q after deleting the source", got)
	}
	unpublish(t, env, "clone", cloneStaging, cloneTarget)

	if _, err := env.Controller().DeleteSnapshot(ctx, &csipb.DeleteSnapshotRequest{SnapshotId: "snap1"}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	if got := readFile(t, filepath.Join(clone2Target, "data")); got != "old bytes" {
		t.Fatalf("clone reads %q after deleting the snapshot", got)
	}
}
