package csi

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// CSI snapshots are filer snapshots named "csi.<snapshot id>"; the CSI
// snapshot id is the CSI snapshot name. The snapshot's root carries the
// source volume's xattrs, so its source volume id survives the volume.

// listSnapshots returns the filer snapshots made by the plugin, in id
// order.
func (d *Driver) listSnapshots(ctx context.Context) ([]filer.SnapshotInfo, error) {
	var all []filer.SnapshotInfo
	if err := d.filer.Read(ctx, &pb.FilerReadRequest{Op: "snapshots"}, &all); err != nil {
		return nil, err
	}
	out := all[:0]
	for _, si := range all {
		if strings.HasPrefix(si.Name, snapshotPfx) {
			out = append(out, si)
		}
	}
	return out, nil
}

// findSnapshot returns the filer snapshot of CSI snapshot id, nil if none.
func (d *Driver) findSnapshot(ctx context.Context, id string) (*filer.SnapshotInfo, error) {
	all, err := d.listSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Name == snapshotPfx+id {
			return &all[i], nil
		}
	}
	return nil, nil
}

// snapshotMsg describes filer snapshot si for CSI: its source volume from
// the xattr copied with the tree, its size the sum of its file sizes
// (computed once: snapshots never change).
func (d *Driver) snapshotMsg(ctx context.Context, si *filer.SnapshotInfo) (*csi.Snapshot, error) {
	src, err := d.getXattr(ctx, si.Root, xattrVolume)
	if err != nil {
		return nil, err
	}
	d.sizeMu.Lock()
	size, ok := d.sizes[si.ID]
	d.sizeMu.Unlock()
	if !ok {
		if size, err = d.treeBytes(ctx, si.Root); err != nil {
			return nil, err
		}
		d.sizeMu.Lock()
		d.sizes[si.ID] = size
		d.sizeMu.Unlock()
	}
	return &csi.Snapshot{
		SnapshotId:     strings.TrimPrefix(si.Name, snapshotPfx),
		SourceVolumeId: src,
		SizeBytes:      int64(size),
		CreationTime:   timestamppb.New(time.Unix(0, si.Time)),
		ReadyToUse:     true,
	}, nil
}

// CreateSnapshot takes a copy-on-write snapshot of the volume, ready at
// once. Idempotent by name and source volume.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, srcID := req.GetName(), req.GetSourceVolumeId()
	if err := checkName(name); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name %q %v", name, err)
	}
	if srcID == "" {
		return nil, status.Error(codes.InvalidArgument, "source_volume_id is required")
	}
	if len(req.GetParameters()) > 0 {
		for k := range req.GetParameters() {
			if !strings.HasPrefix(k, "csi.storage.k8s.io/") {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %q is not known; snapshots take no parameters", k)
			}
		}
	}
	defer d.locks.lock("snapshot/" + name)()
	si, err := d.findSnapshot(ctx, name)
	if err != nil {
		return nil, filerStatus(err, "list snapshots")
	}
	if si == nil {
		in, err := d.lookupVolume(ctx, srcID)
		if err != nil {
			return nil, filerStatus(err, "look up volume %s", srcID)
		}
		if in == nil {
			return nil, status.Errorf(codes.NotFound, "source volume %q does not exist", srcID)
		}
		res, err := d.filer.Apply(ctx, &filer.Snapshot{SrcIno: in.Ino, Name: snapshotPfx + name})
		switch {
		case errors.Is(err, syscall.EEXIST): // taken meanwhile by another controller
			if si, err = d.findSnapshot(ctx, name); err != nil || si == nil {
				return nil, status.Errorf(codes.Aborted, "snapshot %s is being created concurrently; retry", name)
			}
		case err != nil:
			return nil, filerStatus(err, "snapshot volume %s", srcID)
		default:
			si = res.Snapshot
		}
	}
	msg, err := d.snapshotMsg(ctx, si)
	if err != nil {
		return nil, filerStatus(err, "describe snapshot %s", name)
	}
	if msg.SourceVolumeId != srcID {
		return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists and was taken of volume %q, not %q", name, msg.SourceVolumeId, srcID)
	}
	return &csi.CreateSnapshotResponse{Snapshot: msg}, nil
}

// DeleteSnapshot drops the snapshot; unknown ids succeed. Volumes cloned
// from it are independent and stay.
func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	}
	defer d.locks.lock("snapshot/" + id)()
	si, err := d.findSnapshot(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "list snapshots")
	}
	if si == nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if _, err := d.filer.Apply(ctx, &filer.DeleteSnapshot{ID: si.ID}); err != nil && !errors.Is(err, syscall.ENOENT) {
		return nil, filerStatus(err, "delete snapshot %s", id)
	}
	d.sizeMu.Lock()
	delete(d.sizes, si.ID)
	d.sizeMu.Unlock()
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists snapshots in creation order, optionally only one
// snapshot id or those of one source volume. The token is the filer id of
// the last snapshot returned.
func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	tok, err := decodeToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	var after uint64
	if tok != "" {
		if after, err = strconv.ParseUint(tok, 10, 64); err != nil {
			return nil, status.Errorf(codes.Aborted, "starting_token %q was not handed out by ListSnapshots", req.GetStartingToken())
		}
	}
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	max := int(req.GetMaxEntries())
	all, err := d.listSnapshots(ctx)
	if err != nil {
		return nil, filerStatus(err, "list snapshots")
	}
	resp := &csi.ListSnapshotsResponse{}
	var lastID uint64 // filer id of the last entry returned
	for i := range all {
		si := &all[i]
		if si.ID <= after {
			continue
		}
		if id := req.GetSnapshotId(); id != "" && si.Name != snapshotPfx+id {
			continue
		}
		msg, err := d.snapshotMsg(ctx, si)
		if errors.Is(err, syscall.ENOENT) { // deleted meanwhile
			continue
		}
		if err != nil {
			return nil, filerStatus(err, "describe snapshot %s", si.Name)
		}
		if v := req.GetSourceVolumeId(); v != "" && msg.SourceVolumeId != v {
			continue
		}
		if max > 0 && len(resp.Entries) == max {
			resp.NextToken = encodeToken(strconv.FormatUint(lastID, 10))
			break
		}
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: msg})
		lastID = si.ID
	}
	return resp, nil
}

// GetSnapshot describes one snapshot (NotFound if there is none).
func (d *Driver) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	}
	si, err := d.findSnapshot(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "list snapshots")
	}
	if si == nil {
		return nil, status.Errorf(codes.NotFound, "snapshot %q does not exist", id)
	}
	msg, err := d.snapshotMsg(ctx, si)
	if err != nil {
		return nil, filerStatus(err, "describe snapshot %s", id)
	}
	return &csi.GetSnapshotResponse{Snapshot: msg}, nil
}
