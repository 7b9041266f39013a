package fuse

import (
	"strings"
	"sync"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/pb"
)

// GetXAttr copies the value into dest; with a too small dest it returns
// ERANGE and the size needed (go-fuse turns a size query into OK).
func (fs *fileSystem) GetXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string, dest []byte) (uint32, gofuse.Status) {
	defer observeVoid(opGetXAttr, time.Now())
	ino := fs.filerIno(h.NodeId)
	caps := attr == capabilityXattr
	if caps && fs.noCaps.known(ino) {
		return 0, gofuse.ENODATA
	}
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	var val []byte
	err := fs.client.Read(ctx, &pb.FilerReadRequest{Op: "getxattr", Ino: ino, Name: attr}, &val)
	if err != nil {
		st := errStatus(err)
		if caps && st == gofuse.ENODATA {
			fs.noCaps.add(ino)
		}
		return 0, st
	}
	if len(val) > len(dest) {
		return uint32(len(val)), gofuse.ERANGE
	}
	return uint32(copy(dest, val)), gofuse.OK
}

// ListXAttr returns the names, each NUL-terminated.
func (fs *fileSystem) ListXAttr(cancel <-chan struct{}, h *gofuse.InHeader, dest []byte) (uint32, gofuse.Status) {
	defer observeVoid(opListXAttr, time.Now())
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

func (fs *fileSystem) SetXAttr(cancel <-chan struct{}, in *gofuse.SetXAttrIn, attr string, data []byte) (st gofuse.Status) {
	defer observe(opSetXAttr, time.Now(), &st)
	fs.noCaps.forget(fs.filerIno(in.NodeId))
	_, st = fs.applyReq(cancel, &in.InHeader, 0, &filer.SetXattr{Ino: fs.filerIno(in.NodeId), Name: attr, Value: append([]byte(nil), data...), Flags: in.Flags & (filer.XattrCreate | filer.XattrReplace)})
	return st
}

func (fs *fileSystem) RemoveXAttr(cancel <-chan struct{}, h *gofuse.InHeader, attr string) (st gofuse.Status) {
	defer observe(opRemoveXAttr, time.Now(), &st)
	_, st = fs.applyReq(cancel, h, 0, &filer.RemoveXattr{Ino: fs.filerIno(h.NodeId), Name: attr})
	return st
}

// capabilityXattr is asked for by the kernel before every write (to drop
// file capabilities on modification); it is almost never set.
const capabilityXattr = "security.capability"

// absentCapsTTL is how long a "no capability" answer is trusted, the same
// as the mount's attribute timeout: another mount's setxattr is seen
// within it, as its other attribute changes are.
const absentCapsTTL = time.Second

// absentCaps remembers inodes that had no security.capability, so that
// writes do not each cost a filer round trip. Safe for concurrent use.
type absentCaps struct {
	mu sync.Mutex // guards at
	at map[uint64]time.Time
}

func (a *absentCaps) known(ino uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.at[ino]
	if ok && time.Since(t) >= absentCapsTTL {
		delete(a.at, ino)
		return false
	}
	return ok
}

func (a *absentCaps) add(ino uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil || len(a.at) > 100000 {
		a.at = make(map[uint64]time.Time)
	}
	a.at[ino] = time.Now()
}

func (a *absentCaps) forget(ino uint64) {
	a.mu.Lock()
	delete(a.at, ino)
	a.mu.Unlock()
}
