package csi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// Layout of the filer namespace used by the plugin.
const (
	volumesDir  = "csi"        // /csi/<volume id> is a volume
	trashDir    = ".trash"     // /csi/.trash: deleted volumes being removed
	creatingPfx = ".creating-" // /csi/.creating-<id>: a volume being set up
	snapshotPfx = "csi."       // filer snapshot name = "csi." + CSI snapshot id
)

// filerStatus maps a filer error to a gRPC status, saying what failed.
func filerStatus(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var errno syscall.Errno
	code := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.As(err, &errno):
		switch errno {
		case syscall.ENOENT:
			code = codes.NotFound
		case syscall.EEXIST:
			code = codes.AlreadyExists
		case syscall.EDQUOT, syscall.ENOSPC:
			code = codes.ResourceExhausted
		case syscall.EINVAL, syscall.ENAMETOOLONG:
			code = codes.InvalidArgument
		}
	case status.Code(err) == codes.Unavailable || errorsContains(err, "no filer could serve"):
		code = codes.Unavailable
	}
	return status.Errorf(code, "%s: %v", what, err)
}

func errorsContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

// volumesRoot returns /csi, creating it if needed.
func (d *Driver) volumesRoot(ctx context.Context) (*filer.Inode, error) {
	return d.ensureDir(ctx, filer.RootIno, volumesDir, 0o755)
}

// ensureDir returns directory name in parent, creating it if missing.
func (d *Driver) ensureDir(ctx context.Context, parent uint64, name string, mode uint32) (*filer.Inode, error) {
	in, err := d.filer.Lookup(ctx, parent, name)
	if err == nil {
		return in, nil
	}
	if !errors.Is(err, syscall.ENOENT) {
		return nil, err
	}
	res, err := d.filer.Apply(ctx, &filer.Mkdir{Parent: parent, Name: name, Mode: mode})
	if errors.Is(err, syscall.EEXIST) {
		return d.filer.Lookup(ctx, parent, name)
	}
	if err != nil {
		return nil, err
	}
	return res.Inode, nil
}

// lookupVolume returns the root directory of volume id, nil if there is
// no such volume.
func (d *Driver) lookupVolume(ctx context.Context, id string) (*filer.Inode, error) {
	if checkVolumeID(id) != nil {
		return nil, nil
	}
	in, err := d.filer.Resolve(ctx, "/"+volumesDir+"/"+id)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !in.IsDir() {
		return nil, nil
	}
	return in, nil
}

// quotaOf returns the quota of volume root ino (limits 0: unlimited).
func (d *Driver) quotaOf(ctx context.Context, ino uint64) (*filer.Statfs, error) {
	st, err := d.filer.Statfs(ctx, ino)
	if err != nil {
		return nil, err
	}
	if st.Root != ino { // not a quota root (yet): no limits of its own
		return &filer.Statfs{Root: ino}, nil
	}
	return st, nil
}

// getXattr returns extended attribute name of ino ("" if absent).
func (d *Driver) getXattr(ctx context.Context, ino uint64, name string) (string, error) {
	var v []byte
	err := d.filer.Read(ctx, &pb.FilerReadRequest{Op: "getxattr", Ino: ino, Name: name}, &v)
	if errors.Is(err, syscall.ENODATA) {
		return "", nil
	}
	return string(v), err
}

// setXattr sets extended attribute name of ino.
func (d *Driver) setXattr(ctx context.Context, ino uint64, name, value string) error {
	_, err := d.filer.Apply(ctx, &filer.SetXattr{Ino: ino, Name: name, Value: []byte(value)})
	return err
}

// removeTree deletes everything below directory ino and then the entry
// name of parent. Entries already gone are fine.
func (d *Driver) removeTree(ctx context.Context, parent uint64, name string, ino uint64) error {
	for {
		ents, err := d.filer.ReadDir(ctx, ino, "", 1000)
		if errors.Is(err, syscall.ENOENT) {
			break
		}
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			if e.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				err = d.removeTree(ctx, ino, e.Name, e.Ino)
			} else {
				_, err = d.filer.Apply(ctx, &filer.Unlink{Parent: ino, Name: e.Name})
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				return err
			}
		}
	}
	_, err := d.filer.Apply(ctx, &filer.Rmdir{Parent: parent, Name: name})
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}

// treeBytes sums the sizes of the regular files below directory ino.
func (d *Driver) treeBytes(ctx context.Context, ino uint64) (uint64, error) {
	var total uint64
	after := ""
	for {
		ents, err := d.filer.ReadDir(ctx, ino, after, 1000)
		if err != nil {
			return 0, err
		}
		if len(ents) == 0 {
			return total, nil
		}
		for _, e := range ents {
			switch e.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				n, err := d.treeBytes(ctx, e.Ino)
				if err != nil {
					return 0, err
				}
				total += n
			case syscall.S_IFREG:
				in, err := d.filer.GetAttr(ctx, e.Ino)
				if err != nil {
					return 0, err
				}
				total += in.Size
			}
		}
		after = ents[len(ents)-1].Name
	}
}
