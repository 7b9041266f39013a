package fuse

import (
	"context"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-storage/cairn/filer"
)

// dirHandle is an open directory: a snapshot of its listing taken at
// open (and again at a rewind), so offsets stay stable while entries
// come and go.
type dirHandle struct {
	entries []gofuse.DirEntry // ".", "..", then the filer's entries
	served  bool              // entries were read since the snapshot
}

const readDirPage = 1000

// listDir returns the full listing of directory ino, "." and ".." first.
func (fs *fileSystem) listDir(ctx context.Context, nodeID uint64) ([]gofuse.DirEntry, error) {
	ino := fs.filerIno(nodeID)
	self, err := fs.client.Attr(ctx, ino)
	if err != nil {
		return nil, err
	}
	if !self.IsDir() {
		return nil, syscall.ENOTDIR
	}
	parent := self.Parent
	if ino == fs.root || parent == 0 {
		parent = ino
	}
	out := []gofuse.DirEntry{
		{Name: ".", Ino: ino, Mode: syscall.S_IFDIR},
		{Name: "..", Ino: parent, Mode: syscall.S_IFDIR},
	}
	after := ""
	for {
		page, err := fs.client.ReadDir(ctx, ino, after, readDirPage)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			out = append(out, gofuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode})
		}
		if len(page) < readDirPage {
			break
		}
		after = page[len(page)-1].Name
	}
	for i := range out {
		out[i].Off = uint64(i + 1)
	}
	return out, nil
}

func (fs *fileSystem) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) (st gofuse.Status) {
	defer observe(opOpenDir, time.Now(), &st)
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	entries, err := fs.listDir(ctx, in.NodeId)
	if err != nil {
		return errStatus(err)
	}
	fs.mu.Lock()
	fs.mu.nextFh++
	out.Fh = fs.mu.nextFh
	fs.mu.handles[out.Fh] = &handle{ino: fs.filerIno(in.NodeId), flags: in.Flags, dir: &dirHandle{entries: entries}}
	fs.mu.Unlock()
	return gofuse.OK
}

// dirFor returns the snapshot to serve a readdir at offset from. An
// unknown handle (opened before a restart) gets a fresh listing, as does a
// rewind to offset 0 after entries were read.
func (fs *fileSystem) dirFor(cancel <-chan struct{}, in *gofuse.ReadIn) ([]gofuse.DirEntry, gofuse.Status) {
	fs.mu.Lock()
	h := fs.mu.handles[in.Fh]
	var d *dirHandle
	if h != nil {
		d = h.dir
	}
	refresh := d == nil || (in.Offset == 0 && d.served)
	fs.mu.Unlock()
	if refresh {
		ctx, stop := fs.opCtx(cancel)
		defer stop()
		entries, err := fs.listDir(ctx, in.NodeId)
		if err != nil {
			return nil, errStatus(err)
		}
		fs.mu.Lock()
		d = &dirHandle{entries: entries}
		fs.mu.handles[in.Fh] = &handle{ino: fs.filerIno(in.NodeId), dir: d}
		fs.mu.Unlock()
	}
	fs.mu.Lock()
	d.served = true
	entries := d.entries
	fs.mu.Unlock()
	return entries, gofuse.OK
}

func (fs *fileSystem) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) (st gofuse.Status) {
	defer observe(opReadDir, time.Now(), &st)
	entries, st := fs.dirFor(cancel, in)
	if !st.Ok() {
		return st
	}
	for i := in.Offset; i < uint64(len(entries)); i++ {
		if !out.AddDirEntry(entries[i]) {
			break
		}
	}
	return gofuse.OK
}

// ReadDirPlus is ReadDir with the attributes of each entry (the mount
// asks the kernel for plain ReadDir; this serves kernels that send it
// anyway).
func (fs *fileSystem) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) (st gofuse.Status) {
	defer observe(opReadDirPlus, time.Now(), &st)
	entries, st := fs.dirFor(cancel, in)
	if !st.Ok() {
		return st
	}
	ctx, stop := fs.opCtx(cancel)
	defer stop()
	for i := in.Offset; i < uint64(len(entries)); i++ {
		e := entries[i]
		var attr *filer.Inode
		r := fs.startAttrReply(&in.InHeader)
		if e.Name != "." && e.Name != ".." {
			a, err := fs.client.Attr(ctx, e.Ino)
			if err == nil {
				attr = a
			}
		}
		eo := out.AddDirLookupEntry(e)
		if eo == nil {
			break
		}
		if attr != nil && !fs.fillEntry(cancel, attr, r, eo).Ok() {
			*eo = gofuse.EntryOut{} // the name only; the kernel looks it up
		}
	}
	return gofuse.OK
}

func (fs *fileSystem) ReleaseDir(in *gofuse.ReleaseIn) {
	defer observeVoid(opReleaseDir, time.Now())
	fs.mu.Lock()
	delete(fs.mu.handles, in.Fh)
	fs.mu.Unlock()
}
