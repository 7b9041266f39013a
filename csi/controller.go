package csi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// ControllerGetCapabilities lists the controller RPCs offered.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	rpcs := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	if d.master != nil {
		rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_GET_CAPACITY)
	}
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, r := range rpcs {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: r}}})
	}
	return resp, nil
}

// CreateVolume makes /csi/<name> a quota root of the requested capacity,
// empty or a copy-on-write clone of a snapshot or volume. The volume is
// set up under a temporary name and renamed into place last, so a volume
// that exists is complete. Idempotent by name: an existing volume that
// fits the request is returned, one that does not is AlreadyExists.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if err := checkVolumeID(name); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name %q %v", name, err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	params, err := parseParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	capacity, err := capacityFor(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	source := ""
	if src := req.GetVolumeContentSource(); src != nil {
		switch {
		case src.GetSnapshot() != nil:
			source = "snapshot:" + src.GetSnapshot().GetSnapshotId()
		case src.GetVolume() != nil:
			source = "volume:" + src.GetVolume().GetVolumeId()
		default:
			return nil, status.Error(codes.InvalidArgument, "volume_content_source: want a snapshot or a volume")
		}
	}
	defer d.locks.lock("volume/" + name)()

	csiDir, err := d.volumesRoot(ctx)
	if err != nil {
		return nil, filerStatus(err, "create /%s on the filer", volumesDir)
	}
	if vol, err := d.existingVolume(ctx, name, req, source); vol != nil || err != nil {
		return vol, err
	}

	tmp := creatingPfx + name
	if old, err := d.filer.Lookup(ctx, csiDir.Ino, tmp); err == nil {
		if err := d.removeTree(ctx, csiDir.Ino, tmp, old.Ino); err != nil {
			return nil, filerStatus(err, "remove the leftovers of an earlier attempt to create volume %s", name)
		}
	}
	root, err := d.makeVolumeDir(ctx, csiDir.Ino, tmp, req.GetVolumeContentSource(), params)
	if err != nil {
		return nil, err
	}
	setup := func() error {
		if params.Mode != nil || params.UID != nil || params.GID != nil {
			sa := &filer.SetAttr{Ino: root.Ino}
			if params.Mode != nil {
				sa.Valid |= filer.SetMode
				sa.Mode = *params.Mode
			}
			if params.UID != nil {
				sa.Valid |= filer.SetUid
				sa.Uid = *params.UID
			}
			if params.GID != nil {
				sa.Valid |= filer.SetGid
				sa.Gid = *params.GID
			}
			if _, err := d.filer.Apply(ctx, sa); err != nil {
				return filerStatus(err, "set owner and mode of volume %s", name)
			}
		}
		for _, x := range [][2]string{{xattrVolume, name}, {xattrReplication, params.Replication}, {xattrCollection, params.Collection}, {xattrSource, source}} {
			if x[1] == "" && x[0] != xattrSource {
				continue // a clone keeps its source's placement unless told otherwise
			}
			if x[1] == "" {
				if _, err := d.filer.Apply(ctx, &filer.RemoveXattr{Ino: root.Ino, Name: x[0]}); err != nil && !errors.Is(err, syscall.ENODATA) {
					return filerStatus(err, "clear %s of volume %s", x[0], name)
				}
				continue
			}
			if err := d.setXattr(ctx, root.Ino, x[0], x[1]); err != nil {
				return filerStatus(err, "record %s of volume %s", x[0], name)
			}
		}
		if _, err := d.filer.Apply(ctx, &filer.SetQuota{Ino: root.Ino, MaxBytes: capacity}); err != nil {
			return filerStatus(err, "set the quota of volume %s to %d bytes", name, capacity)
		}
		_, err := d.filer.Apply(ctx, &filer.Rename{OldParent: csiDir.Ino, OldName: tmp, NewParent: csiDir.Ino, NewName: name, Flags: filer.RenameNoReplace})
		if err != nil {
			return filerStatus(err, "move volume %s into place", name)
		}
		return nil
	}
	if err := setup(); err != nil {
		if rerr := d.removeTree(context.WithoutCancel(ctx), csiDir.Ino, tmp, root.Ino); rerr != nil {
			d.log.Warn("could not remove a half-created volume; the next CreateVolume of this name removes it", "volume", name, "err", rerr)
		}
		if status.Code(err) == codes.AlreadyExists { // created meanwhile by another controller
			return d.existingVolume(ctx, name, req, source)
		}
		return nil, err
	}
	return &csi.CreateVolumeResponse{Volume: d.volumeMsg(name, capacity, params.Replication, params.Collection, req.GetVolumeContentSource())}, nil
}

// makeVolumeDir creates the root of a new volume at tmp in /csi: a clone
// of the content source, or an empty directory.
func (d *Driver) makeVolumeDir(ctx context.Context, csiIno uint64, tmp string, src *csi.VolumeContentSource, params *volumeParams) (*filer.Inode, error) {
	var op filer.Op
	switch {
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		si, err := d.findSnapshot(ctx, id)
		if err != nil {
			return nil, filerStatus(err, "list snapshots")
		}
		if si == nil {
			return nil, status.Errorf(codes.NotFound, "volume_content_source: snapshot %q does not exist", id)
		}
		op = &filer.Clone{SnapshotID: si.ID, DstParent: csiIno, Name: tmp}
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		in, err := d.lookupVolume(ctx, id)
		if err != nil {
			return nil, filerStatus(err, "look up source volume %s", id)
		}
		if in == nil {
			return nil, status.Errorf(codes.NotFound, "volume_content_source: volume %q does not exist", id)
		}
		op = &filer.Clone{SrcIno: in.Ino, DstParent: csiIno, Name: tmp}
	default:
		mode := uint32(0o755)
		op = &filer.Mkdir{Parent: csiIno, Name: tmp, Mode: mode}
	}
	res, err := d.filer.Apply(ctx, op)
	if err != nil {
		return nil, filerStatus(err, "create the directory of the volume (%s)", op.OpType())
	}
	return res.Inode, nil
}

// existingVolume answers CreateVolume for a volume that already exists
// (nil, nil if it does not).
func (d *Driver) existingVolume(ctx context.Context, name string, req *csi.CreateVolumeRequest, source string) (*csi.CreateVolumeResponse, error) {
	in, err := d.lookupVolume(ctx, name)
	if err != nil {
		return nil, filerStatus(err, "look up volume %s", name)
	}
	if in == nil {
		return nil, nil
	}
	q, err := d.quotaOf(ctx, in.Ino)
	if err != nil {
		return nil, filerStatus(err, "read the quota of volume %s", name)
	}
	if !fits(q.MaxBytes, req.GetCapacityRange()) {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with capacity %d bytes, which does not fit the requested range (required %d, limit %d)",
			name, q.MaxBytes, req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes())
	}
	have, err := d.getXattr(ctx, in.Ino, xattrSource)
	if err != nil {
		return nil, filerStatus(err, "read the content source of volume %s", name)
	}
	if have != source {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with content source %q, not %q", name, have, source)
	}
	repl, _ := d.getXattr(ctx, in.Ino, xattrReplication)
	coll, _ := d.getXattr(ctx, in.Ino, xattrCollection)
	return &csi.CreateVolumeResponse{Volume: d.volumeMsg(name, q.MaxBytes, repl, coll, req.GetVolumeContentSource())}, nil
}

func (d *Driver) volumeMsg(id string, capacity uint64, repl, coll string, src *csi.VolumeContentSource) *csi.Volume {
	v := &csi.Volume{VolumeId: id, CapacityBytes: int64(capacity), ContentSource: src}
	if repl != "" || coll != "" {
		v.VolumeContext = map[string]string{}
		if repl != "" {
			v.VolumeContext[ParamReplication] = repl
		}
		if coll != "" {
			v.VolumeContext[ParamCollection] = coll
		}
	}
	return v
}

// DeleteVolume moves the volume's directory to /csi/.trash (so it is gone
// at once) and removes it there; the needles come back through the filer's
// garbage collection. Unknown or malformed ids succeed.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if checkVolumeID(id) != nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	defer d.locks.lock("volume/" + id)()
	csiDir, err := d.volumesRoot(ctx)
	if err != nil {
		return nil, filerStatus(err, "open /%s on the filer", volumesDir)
	}
	trash, err := d.ensureDir(ctx, csiDir.Ino, trashDir, 0o700)
	if err != nil {
		return nil, filerStatus(err, "create /%s/%s on the filer", volumesDir, trashDir)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	_, err = d.filer.Apply(ctx, &filer.Rename{OldParent: csiDir.Ino, OldName: id, NewParent: trash.Ino,
		NewName: id + "." + strconv.FormatInt(time.Now().Unix(), 10) + "." + hex.EncodeToString(b), Flags: filer.RenameNoReplace})
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return nil, filerStatus(err, "move volume %s to the trash", id)
	}
	if err := d.emptyTrash(ctx, trash.Ino); err != nil {
		return nil, filerStatus(err, "remove deleted volume %s", id)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// emptyTrash removes every deleted volume in the trash.
func (d *Driver) emptyTrash(ctx context.Context, trash uint64) error {
	for {
		ents, err := d.filer.ReadDir(ctx, trash, "", 100)
		if err != nil || len(ents) == 0 {
			return err
		}
		for _, e := range ents {
			if err := d.removeTree(ctx, trash, e.Name, e.Ino); err != nil {
				return err
			}
		}
	}
}

// ControllerExpandVolume raises the volume's quota; mounts see the new
// size at once, so no node step is needed. Shrinking is not done: a
// smaller request returns the current capacity.
func (d *Driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity_range is required")
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := checkCapability(c); err != nil {
			return nil, err
		}
	}
	want, err := capacityFor(req.GetCapacityRange())
	if err != nil {
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
	q, err := d.quotaOf(ctx, in.Ino)
	if err != nil {
		return nil, filerStatus(err, "read the quota of volume %s", id)
	}
	if q.MaxBytes == 0 || (want != 0 && want <= q.MaxBytes) {
		return &csi.ControllerExpandVolumeResponse{CapacityBytes: int64(q.MaxBytes)}, nil
	}
	if _, err := d.filer.Apply(ctx, &filer.SetQuota{Ino: in.Ino, MaxBytes: want, MaxInodes: q.MaxInodes}); err != nil {
		return nil, filerStatus(err, "raise the quota of volume %s to %d bytes", id, want)
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: int64(want), NodeExpansionRequired: false}, nil
}

// ValidateVolumeCapabilities confirms the capabilities (and parameters)
// when cairn offers all of them.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities: at least one capability is required")
	}
	in, err := d.lookupVolume(ctx, id)
	if err != nil {
		return nil, filerStatus(err, "look up volume %s", id)
	}
	if in == nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	if _, err := parseParams(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

const tokenPrefix = "cairn:"

func encodeToken(s string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + s))
}

func decodeToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), tokenPrefix) {
		return "", status.Errorf(codes.Aborted, "starting_token %q was not handed out by this plugin; list again from the start", tok)
	}
	return strings.TrimPrefix(string(b), tokenPrefix), nil
}

// ListVolumes lists volumes in name order. The token is the last name
// returned, so volumes added or deleted between pages neither repeat nor
// shift the listing.
func (d *Driver) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	after, err := decodeToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	max := int(req.GetMaxEntries())
	csiDir, err := d.volumesRoot(ctx)
	if err != nil {
		return nil, filerStatus(err, "open /%s on the filer", volumesDir)
	}
	resp := &csi.ListVolumesResponse{}
	for {
		ents, err := d.filer.ReadDir(ctx, csiDir.Ino, after, 1000)
		if err != nil {
			return nil, filerStatus(err, "list /%s", volumesDir)
		}
		if len(ents) == 0 {
			return resp, nil
		}
		for _, e := range ents {
			after = e.Name
			if strings.HasPrefix(e.Name, ".") || e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				continue
			}
			if max > 0 && len(resp.Entries) == max {
				resp.NextToken = encodeToken(resp.Entries[len(resp.Entries)-1].Volume.VolumeId)
				return resp, nil
			}
			q, err := d.quotaOf(ctx, e.Ino)
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			if err != nil {
				return nil, filerStatus(err, "read the quota of volume %s", e.Name)
			}
			repl, _ := d.getXattr(ctx, e.Ino, xattrReplication)
			coll, _ := d.getXattr(ctx, e.Ino, xattrCollection)
			resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: d.volumeMsg(e.Name, q.MaxBytes, repl, coll, nil)})
		}
	}
}

// GetCapacity reports the free bytes of the alive volume servers, as the
// master leader sees them. Replication divides what can really be stored.
func (d *Driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if d.master == nil {
		return nil, status.Error(codes.Unimplemented, "GetCapacity needs --master")
	}
	for _, c := range req.GetVolumeCapabilities() {
		if checkCapability(c) != nil {
			return &csi.GetCapacityResponse{AvailableCapacity: 0}, nil
		}
	}
	if _, err := parseParams(req.GetParameters()); err != nil {
		return nil, err
	}
	var lastErr error
	for _, addr := range d.cfg.Masters {
		conn, err := d.master.Conn(addr)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := pb.NewMasterClient(conn).ClusterStatus(cctx, &pb.ClusterStatusRequest{})
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if !st.IsLeader && len(st.Servers) == 0 {
			continue
		}
		var free uint64
		for _, s := range st.Servers {
			if s.Alive {
				free += s.FreeBytes
			}
		}
		return &csi.GetCapacityResponse{AvailableCapacity: int64(free)}, nil
	}
	return nil, status.Errorf(codes.Unavailable, "no master answered ClusterStatus (masters %s): %v", strings.Join(d.cfg.Masters, ","), lastErr)
}
