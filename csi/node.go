package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/cairn-storage/cairn/csi/mountsvc"
	"github.com/cairn-storage/cairn/filer"
)

// nodeVolumeCondition is the VOLUME_CONDITION node capability (wire value
// 4), which CSI 1.13 renamed away in favour of GET_VOLUME_HEALTH. COs built
// on earlier specs (Nomad, older kubelets) still look for it, together with
// the volume_condition field of NodeGetVolumeStatsResponse.
const nodeVolumeCondition csi.NodeServiceCapability_RPC_Type = 4

// NodeGetInfo reports the node id given with --nodeid.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID}, nil
}

// NodeGetCapabilities lists the node RPCs offered.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	resp := &csi.NodeGetCapabilitiesResponse{}
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		nodeVolumeCondition,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_GET_STORAGE_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		resp.Capabilities = append(resp.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return resp, nil
}

// mountStatus maps a mount service error to a gRPC status.
func mountStatus(err error, format string, args ...any) error {
	code := codes.Internal
	switch mountsvc.ErrorCode(err) {
	case mountsvc.CodeInvalid:
		code = codes.InvalidArgument
	case mountsvc.CodeNotFound:
		code = codes.NotFound
	case mountsvc.CodeConflict:
		code = codes.FailedPrecondition
	case mountsvc.CodeUnavailable:
		code = codes.Unavailable
	}
	return status.Errorf(code, "%s: %v", fmt.Sprintf(format, args...), err)
}

// NodeStageVolume asks the mount service to mount the volume's directory
// at the staging path: one FUSE mount per volume per node, hosted outside
// this process. Already mounted there is success.
func (d *Driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case staging == "":
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required")
	case !filepath.IsAbs(staging):
		return nil, status.Errorf(codes.InvalidArgument, "staging_target_path %q must be absolute", staging)
	}
	if err := checkCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	defer d.locks.lock("volume/" + id)()
	in, err := d.lookupVolume(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "look up volume %s", id)
	}
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	repl, _ := d.getXattr(ctx, in.Ino, xattrReplication)
	coll, _ := d.getXattr(ctx, in.Ino, xattrCollection)
	resp, err := d.mounts.Mount(ctx, mountsvc.Mount{
		VolumeID: id, Root: "/" + volumesDir + "/" + id, Dir: filepath.Clean(staging),
		ReadOnly: readOnlyMode(req.GetVolumeCapability()), Replication: repl, Collection: coll,
	})
	if err != nil {
		return nil, mountStatus(err, "mount volume %s at %s", id, staging)
	}
	if resp.Already {
		d.log.Info("volume already staged", "volume", id, "staging", staging)
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume asks the mount service to flush and unmount the
// staging path. A dead mount left there (the mount service lost it) is
// detached here. Not staged is success.
func (d *Driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case staging == "":
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required")
	}
	staging = filepath.Clean(staging)
	defer d.locks.lock("volume/" + id)()
	ms, err := readMounts()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if st := mountAt(ms, staging); st != nil {
		var users []string
		for _, m := range ms {
			if m.Dev == st.Dev && m.Point != staging {
				users = append(users, m.Point)
			}
		}
		if len(users) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %s; unpublish it first", id, strings.Join(users, ", "))
		}
	}
	if _, err := d.mounts.Unmount(ctx, staging); err != nil {
		return nil, mountStatus(err, "unmount volume %s at %s", id, staging)
	}
	if err := detachAll(staging); err != nil {
		return nil, status.Errorf(codes.Internal, "unmount %s: %v", staging, err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// detachAll lazily unmounts whatever is still mounted at path.
func detachAll(path string) error {
	for range 10 {
		ms, err := readMounts()
		if err != nil {
			return err
		}
		if mountAt(ms, path) == nil {
			return nil
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return fmt.Errorf("still mounted after 10 unmounts")
}

// NodePublishVolume bind-mounts the staging path onto the target path,
// read-only when asked. Already published there the same way is success.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, staging, target := req.GetVolumeId(), req.GetStagingTargetPath(), req.GetTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	case staging == "":
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required (the plugin stages volumes: STAGE_UNSTAGE_VOLUME)")
	case !filepath.IsAbs(target) || !filepath.IsAbs(staging):
		return nil, status.Error(codes.InvalidArgument, "target_path and staging_target_path must be absolute")
	}
	if err := checkCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	staging, target = filepath.Clean(staging), filepath.Clean(target)
	readOnly := req.GetReadonly() || readOnlyMode(req.GetVolumeCapability())
	defer d.locks.lock("volume/" + id)()
	ms, err := readMounts()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	st := mountAt(ms, staging)
	if st == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s; call NodeStageVolume first", id, staging)
	}
	if cur := mountAt(ms, target); cur != nil {
		if cur.Dev == st.Dev && cur.readOnly() == readOnly {
			return &csi.NodePublishVolumeResponse{}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "%s is already a mount point of another volume or with other options (read_only=%v)", target, cur.readOnly())
	}
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		for _, m := range ms {
			if m.Dev == st.Dev && m.Point != staging && m.Point != target {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s", id, m.Point)
			}
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create target path %s: %v", target, err)
	}
	if err := unix.Mount(staging, target, "", unix.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "bind mount %s onto %s: %v", staging, target, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return nil, status.Errorf(codes.Internal, "make the bind mount at %s read-only: %v", target, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target path (lazily if busy or dead)
// and removes it. Not published is success.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	}
	target = filepath.Clean(target)
	defer d.locks.lock("volume/" + id)()
	for range 10 {
		ms, err := readMounts()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if mountAt(ms, target) == nil {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			d.log.Info("target busy or dead; detaching it lazily", "volume", id, "target", target, "err", err)
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return nil, status.Errorf(codes.Internal, "unmount %s: %v", target, err)
			}
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("could not remove the target path after unmounting it", "target", target, "err", err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports bytes and inodes from the volume's quota
// (the file system's statfs for limits the quota leaves open) and whether
// the mount is alive: abnormal when the path gives ENOTCONN (the FUSE
// server is gone) or the mount service does not host the volume.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case path == "":
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	in, err := d.lookupVolume(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "look up volume %s", id)
	}
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	var fs unix.Statfs_t
	statErr := unix.Statfs(path, &fs)
	if errors.Is(statErr, syscall.ENOENT) {
		return nil, status.Errorf(codes.NotFound, "volume path %s does not exist", path)
	}
	h := d.health(ctx, id, path, statErr)
	q, err := d.quotaOf(ctx, in.Ino)
	if err != nil {
		return nil, filerStatus(err, "read the quota of volume %s", id)
	}
	bytes := &csi.VolumeUsage{Unit: csi.VolumeUsage_BYTES, Used: int64(q.Bytes)}
	inodes := &csi.VolumeUsage{Unit: csi.VolumeUsage_INODES, Used: int64(q.Inodes)}
	if q.MaxBytes > 0 {
		bytes.Total, bytes.Available = int64(q.MaxBytes), int64(q.MaxBytes)-int64(min(q.Bytes, q.MaxBytes))
	} else if statErr == nil {
		bytes.Total, bytes.Available = int64(fs.Blocks)*fs.Bsize, int64(fs.Bavail)*fs.Bsize
	}
	if q.MaxInodes > 0 {
		inodes.Total, inodes.Available = int64(q.MaxInodes), int64(q.MaxInodes)-int64(min(q.Inodes, q.MaxInodes))
	} else if statErr == nil {
		inodes.Total, inodes.Available = int64(fs.Files), int64(fs.Ffree)
	}
	resp := &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{bytes, inodes}}
	resp.ProtoReflect().SetUnknown(volumeConditionField(h))
	return resp, nil
}

// volumeHealth is the condition of a volume's mount on this node.
type volumeHealth struct {
	Abnormal bool
	Reason   string // CamelCase, for VolumeHealthEntry.Reason
	Message  string
}

// health checks the mount of volume id at path (statErr: the result of
// statfs on it; path "" when none is known): abnormal when the path gives
// ENOTCONN (the FUSE server is gone) or the mount service does not host
// the volume.
func (d *Driver) health(ctx context.Context, id, path string, statErr error) volumeHealth {
	switch {
	case errors.Is(statErr, syscall.ENOTCONN):
		return volumeHealth{true, "TransportEndpointNotConnected", fmt.Sprintf("%s: transport endpoint is not connected: the FUSE server of this mount is gone; restart the allocation (unpublish and publish again)", path)}
	case statErr != nil:
		return volumeHealth{true, "StatfsFailed", fmt.Sprintf("statfs %s: %v", path, statErr)}
	}
	if msg := d.mountHealth(ctx, id); msg != "" {
		return volumeHealth{true, "MountServiceLostMount", msg}
	}
	return volumeHealth{Message: "mounted and serving"}
}

// volumeConditionField encodes h as field 2 (volume_condition: {bool
// abnormal = 1; string message = 2;}) of NodeGetVolumeStatsResponse as
// CSI 1.2 to 1.12 define it; CSI 1.13 dropped the field from the Go types.
func volumeConditionField(h volumeHealth) []byte {
	var inner []byte
	if h.Abnormal {
		inner = protowire.AppendTag(inner, 1, protowire.VarintType)
		inner = protowire.AppendVarint(inner, 1)
	}
	inner = protowire.AppendTag(inner, 2, protowire.BytesType)
	inner = protowire.AppendString(inner, h.Message)
	out := protowire.AppendTag(nil, 2, protowire.BytesType)
	return protowire.AppendBytes(out, inner)
}

// NodeGetVolumeHealth reports the condition of the volume's mount on this
// node (at volume_publish_path if given, else at its staging path).
func (d *Driver) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePublishPath()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	in, err := d.lookupVolume(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "look up volume %s", id)
	}
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	if path == "" {
		if list, err := d.mounts.List(ctx); err == nil {
			for _, m := range list {
				if m.VolumeID == id {
					path = m.Dir
				}
			}
		}
	}
	var h volumeHealth
	if path == "" {
		h = d.health(ctx, id, "", nil)
	} else {
		var fs unix.Statfs_t
		statErr := unix.Statfs(path, &fs)
		if errors.Is(statErr, syscall.ENOENT) {
			return nil, status.Errorf(codes.NotFound, "volume path %s does not exist", path)
		}
		h = d.health(ctx, id, path, statErr)
	}
	vh := &csi.VolumeHealth{VolumeId: id}
	if h.Abnormal {
		vh.HealthStatuses = []*csi.VolumeHealth_VolumeHealthEntry{{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: h.Reason, Message: h.Message}}
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: vh}, nil
}

// mountHealth returns why the mount service's mount of volume id is not
// healthy, "" if it is.
func (d *Driver) mountHealth(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := d.mounts.List(ctx)
	if err != nil {
		return fmt.Sprintf("the mount service does not answer (%v); mounts it hosts are dead if it is gone", err)
	}
	for _, m := range list {
		if m.VolumeID == id {
			if !m.Alive {
				return fmt.Sprintf("the mount service's mount of this volume at %s has stopped", m.Dir)
			}
			return ""
		}
	}
	return "the mount service does not host this volume (it was restarted without its state file, or the volume was unstaged)"
}

// NodeGetStorageHealth reports whether this node reaches the filer and its
// mount service.
func (d *Driver) NodeGetStorageHealth(ctx context.Context, _ *csi.NodeGetStorageHealthRequest) (*csi.NodeGetStorageHealthResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp := &csi.NodeGetStorageHealthResponse{}
	if _, err := d.filer.Statfs(ctx, filer.RootIno); err != nil {
		resp.BackendHealth = append(resp.BackendHealth, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
			Status: csi.StorageHealthErrorType_STORAGE_UNREACHABLE, Reason: "FilerUnreachable",
			Message: fmt.Sprintf("filer %s does not answer: %v", d.filer.Addrs(), err)})
	}
	if _, err := d.mounts.List(ctx); err != nil {
		resp.BackendHealth = append(resp.BackendHealth, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
			Status: csi.StorageHealthErrorType_STORAGE_UNREACHABLE, Reason: "MountServiceUnreachable",
			Message: err.Error()})
	}
	return resp, nil
}
