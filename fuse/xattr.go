package fuse

import (
	"strings"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// GetXAttr copies the value into dest; with a too small dest it returns
// ERANGE and the size needed (go-fuse turns a size query into OK).
func (fs *fileSystem) GetXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string, dest []byte) (uint32, gofuse.Status) {
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	var val []byte
	err := fs.client.Read(ctx, &pb.FilerReadRequest{Op: "getxattr", Ino: fs.filerIno(h.NodeId), Name: attr}, &val)
	if err != nil {
		return 0, errStatus(err)
	}
	if len(val) > len(dest) {
		return uint32(len(val)), gofuse.ERANGE
	}
	return uint32(copy(dest, val)), gofuse.OK
}

// ListXAttr returns the names, each NUL-terminated.
func (fs *fileSystem) ListXAttr(cancel <-chan struct{}, h *gofuse.InHeader, dest []byte) (uint32, gofuse.Status) {
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	var names []string
	err := fs.client.Read(ctx, &pb.FilerReadRequest{Op: "listxattr", Ino: fs.filerIno(h.NodeId)}, &names)
	if err != nil {
		return 0, errStatus(err)
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
	}
	if b.Len() > len(dest) {
		return uint32(b.Len()), gofuse.ERANGE
	}
	return uint32(copy(dest, b.String())), gofuse.OK
}

func (fs *fileSystem) SetXAttr(cancel <-chan struct{}, in *gofuse.SetXAttrIn, attr string, data []byte) gofuse.Status {
	_, st := fs.apply(cancel, &filer.SetXattr{Ino: fs.filerIno(in.NodeId), Name: attr, Value: append([]byte(nil), data...), Flags: in.Flags & (filer.XattrCreate | filer.XattrReplace)})
	return st
}

func (fs *fileSystem) RemoveXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string) gofuse.Status {
	_, st := fs.apply(cancel, &filer.RemoveXattr{Ino: fs.filerIno(h.NodeId), Name: attr})
	return st
}
