package csi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Volume parameters (CreateVolume's parameters, Nomad's volume
// `parameters {}`).
const (
	ParamReplication = "replication" // replica placement xyz, e.g. "001"
	ParamCollection  = "collection"  // collection of the volume's data
	ParamUID         = "uid"         // owner of the volume root, decimal
	ParamGID         = "gid"         // group of the volume root, decimal
	ParamMode        = "mode"        // permission bits of the volume root, octal
)

// Extended attributes kept on a volume's root directory. trusted.* keeps
// them out of reach of unprivileged applications.
const (
	xattrVolume      = "trusted.cairn.csi.volume" // the volume id (copied into snapshots)
	xattrReplication = "trusted.cairn.csi.replication"
	xattrCollection  = "trusted.cairn.csi.collection"
	xattrSource      = "trusted.cairn.csi.source" // "snapshot:<id>" or "volume:<id>" for clones
)

// capacityUnit is what requested capacities are rounded up to.
const capacityUnit = 1 << 20

// volumeParams are the parsed parameters of a volume.
type volumeParams struct {
	Replication string
	Collection  string
	UID, GID    *uint32
	Mode        *uint32
}

// parseParams checks every parameter; an unknown or malformed one is an
// InvalidArgument error naming it and saying why. Keys under
// csi.storage.k8s.io/ (set by Kubernetes sidecars) are ignored.
func parseParams(params map[string]string) (*volumeParams, error) {
	p := &volumeParams{}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := params[k]
		switch {
		case k == ParamReplication:
			if len(v) != 3 || strings.Trim(v, "0123456789") != "" {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %q = %q: want three digits xyz (x: other data centers, y: other racks, z: other servers in the rack), e.g. \"001\" for two copies", k, v)
			}
			p.Replication = v
		case k == ParamCollection:
			if v == "" || len(v) > 64 || strings.Trim(strings.ToLower(v), "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %q = %q: want 1 to 64 letters, digits, '_' or '-'", k, v)
			}
			p.Collection = v
		case k == ParamUID || k == ParamGID:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %q = %q: want a numeric id such as 1000 (names are not resolved)", k, v)
			}
			id := uint32(n)
			if k == ParamUID {
				p.UID = &id
			} else {
				p.GID = &id
			}
		case k == ParamMode:
			n, err := strconv.ParseUint(strings.TrimPrefix(v, "0o"), 8, 32)
			if err != nil || n > 0o7777 {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %q = %q: want octal permission bits no larger than 7777, e.g. \"0775\"", k, v)
			}
			m := uint32(n)
			p.Mode = &m
		case strings.HasPrefix(k, "csi.storage.k8s.io/"):
		default:
			return nil, status.Errorf(codes.InvalidArgument, "parameter %q is not known; cairn volumes take %s, %s, %s, %s and %s", k,
				ParamReplication, ParamCollection, ParamUID, ParamGID, ParamMode)
		}
	}
	return p, nil
}

// capacityFor returns the quota for a capacity range: the required bytes
// rounded up to a MiB (at most the limit), or the limit when only that is
// given; 0 (unlimited) without a range.
func capacityFor(r *csi.CapacityRange) (uint64, error) {
	if r == nil {
		return 0, nil
	}
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "capacity_range: negative bytes (required %d, limit %d)", req, lim)
	}
	if lim > 0 && req > lim {
		return 0, status.Errorf(codes.OutOfRange, "capacity_range: required_bytes %d is above limit_bytes %d", req, lim)
	}
	if req == 0 {
		return uint64(lim), nil
	}
	c := (uint64(req) + capacityUnit - 1) / capacityUnit * capacityUnit
	if lim > 0 && c > uint64(lim) {
		c = uint64(req)
	}
	return c, nil
}

// fits reports whether a volume of capacity c (0: unlimited) satisfies r.
func fits(c uint64, r *csi.CapacityRange) bool {
	if r == nil {
		return true
	}
	if lim := r.GetLimitBytes(); lim > 0 && (c == 0 || c > uint64(lim)) {
		return false
	}
	if req := r.GetRequiredBytes(); req > 0 && c != 0 && c < uint64(req) {
		return false
	}
	return true
}

// checkCapabilities accepts every file-system access mode; block access,
// unknown modes and foreign file system types are InvalidArgument.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume_capabilities: at least one capability is required")
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	if c.GetBlock() != nil {
		return status.Error(codes.InvalidArgument, "block access is not supported: cairn volumes are file systems; ask for access type mount (Nomad: attachment_mode = \"file-system\")")
	}
	m := c.GetMount()
	if m == nil {
		return status.Error(codes.InvalidArgument, "volume_capability: access type is required; cairn volumes are file systems (access type mount)")
	}
	switch m.GetFsType() {
	case "", "cairn", "fuse", "fuse.cairn":
	default:
		return status.Errorf(codes.InvalidArgument, "volume_capability: fs_type %q is not offered; cairn volumes are FUSE file systems (leave fs_type empty)", m.GetFsType())
	}
	if c.GetAccessMode() == nil {
		return status.Error(codes.InvalidArgument, "volume_capability: access_mode is required")
	}
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "volume_capability: access mode %s is not known", c.GetAccessMode().GetMode())
}

// readOnlyMode reports whether an access mode only reads.
func readOnlyMode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}

// checkVolumeID checks a volume id (also the volume name): a valid file
// name that does not start with '.' (names starting with '.' are the
// plugin's own: trash and volumes being created).
func checkVolumeID(id string) error {
	if err := checkName(id); err != nil {
		return err
	}
	if strings.HasPrefix(id, ".") {
		return fmt.Errorf("must not start with '.'")
	}
	return nil
}

func checkName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty")
	case len(s) > 200:
		return fmt.Errorf("is longer than 200 bytes")
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("contains '/' or NUL")
	case s == "." || s == "..":
		return fmt.Errorf("is %q", s)
	}
	return nil
}
