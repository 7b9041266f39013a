package filer

import (
	"bytes"
	"syscall"
)

// orphanLinkable is the orphan list's value for a file made by CreateTmp,
// which Link may give a name; a file unlinked while open has an empty
// value and stays nameless, as on Linux.
var orphanLinkable = []byte{1}

// MaxSymlinkLen is the longest symlink target, as PATH_MAX.
const MaxSymlinkLen = 4096

// prepCreate checks that entry name can be created in dir parent: the
// name is valid, the parent a live directory, the name free and the
// parent writable, in that order.
func (t *txn) prepCreate(parent uint64, name string) (*Inode, syscall.Errno) {
	if e := ValidateName(name); e != 0 {
		return nil, e
	}
	p, e := t.dir(parent)
	if e != 0 {
		return nil, e
	}
	if t.lookup(p.Ino, name) != 0 {
		return nil, syscall.EEXIST
	}
	if p.ReadOnly() {
		return nil, syscall.EROFS
	}
	return p, 0
}

// newInode gives in a new inode number, its times and first generation,
// and charges it to p's quota root (where it is created).
func (t *txn) newInode(p *Inode, in *Inode) {
	in.Ino = t.nextIno()
	in.Atime, in.Mtime, in.Ctime = t.now, t.now, t.now
	in.Generation = 1
	in.QuotaRoot = t.rootOf(p)
	t.charge(in.QuotaRoot, int64(in.chargedBytes()), 1)
}

// addEntry makes in a new inode (newInode) and links it as name in p.
func (t *txn) addEntry(p *Inode, name string, in *Inode) {
	t.newInode(p, in)
	if in.IsDir() {
		in.Nlink = 2
		in.Parent = p.Ino
		p.Nlink++
	} else {
		in.Nlink = 1
	}
	t.putInode(in)
	t.putDentry(p.Ino, name, in.Ino)
	t.touchDir(p)
	t.putInode(p)
}

func (t *txn) mkdir(op *Mkdir) *Result {
	p, e := t.prepCreate(op.Parent, op.Name)
	if e != 0 {
		return errnoResult(e)
	}
	in := &Inode{Mode: syscall.S_IFDIR | op.Mode&0o7777, Uid: op.Uid, Gid: op.Gid}
	t.addEntry(p, op.Name, in)
	return t.okInode(in.Ino)
}

func (t *txn) create(op *Create) *Result {
	if e := ValidateName(op.Name); e != 0 {
		return errnoResult(e)
	}
	p, e := t.dir(op.Parent)
	if e != 0 {
		return errnoResult(e)
	}
	if ino := t.lookup(p.Ino, op.Name); ino != 0 {
		in := t.inode(ino)
		switch {
		case op.Excl:
			return errnoResult(syscall.EEXIST)
		case in.IsDir():
			return errnoResult(syscall.EISDIR)
		}
		return &Result{Inode: t.withSlices(in)}
	}
	if p.ReadOnly() {
		return errnoResult(syscall.EROFS)
	}
	in := &Inode{Mode: syscall.S_IFREG | op.Mode&0o7777, Uid: op.Uid, Gid: op.Gid}
	t.addEntry(p, op.Name, in)
	res := t.okInode(in.Ino)
	res.Created = true
	return res
}

func (t *txn) createTmp(op *CreateTmp) *Result {
	p, e := t.dir(op.Parent)
	switch {
	case e != 0:
		return errnoResult(e)
	case p.ReadOnly():
		return errnoResult(syscall.EROFS)
	}
	in := &Inode{Mode: syscall.S_IFREG | op.Mode&0o7777, Uid: op.Uid, Gid: op.Gid}
	t.newInode(p, in)
	t.putInode(in)
	t.must(t.orphans.Put(u64key(in.Ino), orphanLinkable))
	res := t.okInode(in.Ino)
	res.Created = true
	return res
}

func (t *txn) symlink(op *Symlink) *Result {
	switch {
	case op.Target == "":
		return errnoResult(syscall.ENOENT)
	case len(op.Target) > MaxSymlinkLen:
		return errnoResult(syscall.ENAMETOOLONG)
	}
	p, e := t.prepCreate(op.Parent, op.Name)
	if e != 0 {
		return errnoResult(e)
	}
	in := &Inode{Mode: syscall.S_IFLNK | 0o777, Uid: op.Uid, Gid: op.Gid, Target: op.Target, Size: uint64(len(op.Target))}
	t.addEntry(p, op.Name, in)
	return t.okInode(in.Ino)
}

func (t *txn) link(op *Link) *Result {
	if e := ValidateName(op.NewName); e != 0 {
		return errnoResult(e)
	}
	in := t.inode(op.Ino)
	orphan := in != nil && in.Nlink == 0 && bytes.Equal(t.orphans.Get(u64key(in.Ino)), orphanLinkable)
	if in == nil || in.Nlink == 0 && !orphan {
		return errnoResult(syscall.ENOENT)
	}
	p, e := t.dir(op.NewParent)
	if e != 0 {
		return errnoResult(e)
	}
	switch {
	case t.lookup(p.Ino, op.NewName) != 0:
		return errnoResult(syscall.EEXIST)
	case in.IsDir():
		return errnoResult(syscall.EPERM)
	case p.ReadOnly() || in.ReadOnly():
		return errnoResult(syscall.EROFS)
	}
	in.Nlink++
	in.Ctime = t.now
	t.putInode(in)
	if orphan {
		t.must(t.orphans.Delete(u64key(in.Ino)))
	}
	t.putDentry(p.Ino, op.NewName, in.Ino)
	t.touchDir(p)
	t.putInode(p)
	return t.okInode(in.Ino)
}

// entry looks up entry name of directory parent for removal: the name is
// valid, the parent a live directory, the entry present.
func (t *txn) entry(parent uint64, name string) (p, in *Inode, e syscall.Errno) {
	if e := ValidateName(name); e != 0 {
		return nil, nil, e
	}
	if p, e = t.dir(parent); e != 0 {
		return nil, nil, e
	}
	ino := t.lookup(p.Ino, name)
	if ino == 0 {
		return nil, nil, syscall.ENOENT
	}
	if in = t.inode(ino); in == nil {
		t.mustf("entry %q of %d points at missing inode %d", name, parent, ino)
	}
	return p, in, 0
}

func (t *txn) unlink(op *Unlink) *Result {
	p, in, e := t.entry(op.Parent, op.Name)
	switch {
	case e != 0:
		return errnoResult(e)
	case in.IsDir():
		return errnoResult(syscall.EISDIR)
	case p.ReadOnly():
		return errnoResult(syscall.EROFS)
	}
	t.delDentry(p.Ino, op.Name)
	t.touchDir(p)
	t.putInode(p)
	t.dropLink(in, op.KeepIfOpen)
	return &Result{}
}

// dropLink decrements the link count of the non-directory in after one of
// its entries was removed, and frees it or makes it an orphan at zero.
func (t *txn) dropLink(in *Inode, keepIfOpen bool) {
	in.Nlink--
	in.Ctime = t.now
	switch {
	case in.Nlink > 0:
		t.putInode(in)
	case keepIfOpen && in.IsRegular():
		t.putInode(in)
		t.must(t.orphans.Put(u64key(in.Ino), []byte{}))
	default:
		t.freeInode(in)
	}
}

func (t *txn) rmdir(op *Rmdir) *Result {
	p, in, e := t.entry(op.Parent, op.Name)
	switch {
	case e != 0:
		return errnoResult(e)
	case !in.IsDir():
		return errnoResult(syscall.ENOTDIR)
	case t.hasChildren(in.Ino):
		return errnoResult(syscall.ENOTEMPTY)
	case p.ReadOnly():
		return errnoResult(syscall.EROFS)
	}
	t.delDentry(p.Ino, op.Name)
	p.Nlink--
	t.touchDir(p)
	t.putInode(p)
	t.removeDir(in, t.rootOf(p))
	return &Result{}
}

// removeDir frees the empty live directory in, whose entry is gone; if it
// was a quota root, what is still charged to it moves to newRoot.
func (t *txn) removeDir(in *Inode, newRoot uint64) {
	t.freeInode(in)
	if t.isQuotaRoot(in.Ino) {
		t.removeQuotaRoot(in.Ino, newRoot)
	}
}

func (t *txn) releaseOrphan(op *ReleaseOrphan) *Result {
	if t.orphans.Get(u64key(op.Ino)) == nil {
		return errnoResult(syscall.ENOENT)
	}
	in := t.inode(op.Ino)
	if in == nil || in.Nlink != 0 {
		t.mustf("orphan %d is missing or linked", op.Ino)
	}
	t.freeInode(in)
	return &Result{}
}

func (t *txn) setAttr(op *SetAttr) *Result {
	in, e := t.liveInode(op.Ino)
	if e != 0 {
		return errnoResult(e)
	}
	if op.Valid&SetSize != 0 {
		switch {
		case in.IsDir():
			return errnoResult(syscall.EISDIR)
		case !in.IsRegular():
			return errnoResult(syscall.EINVAL)
		case op.Size > MaxFileSize:
			return errnoResult(syscall.EFBIG)
		}
	}
	if in.ReadOnly() {
		return errnoResult(syscall.EROFS)
	}
	if op.Valid&SetMode != 0 {
		in.Mode = in.Type() | op.Mode&0o7777
	}
	if op.Valid&SetUid != 0 {
		in.Uid = op.Uid
	}
	if op.Valid&SetGid != 0 {
		in.Gid = op.Gid
	}
	if op.Valid&SetSize != 0 {
		t.resize(in, op.Size)
		in.Mtime = t.now
	}
	if op.Valid&SetAtime != 0 {
		in.Atime = op.Atime
	}
	if op.Valid&SetMtime != 0 {
		in.Mtime = op.Mtime
	}
	in.Ctime = t.now
	t.putInode(in)
	return t.okInode(in.Ino)
}

// resize truncates or extends regular file in to size: slices past it are
// cut, so a later extension reads zeros.
func (t *txn) resize(in *Inode, size uint64) {
	if size < in.Size {
		t.clearRange(in.Ino, size, MaxFileSize)
	}
	t.charge(in.QuotaRoot, int64(size)-int64(in.Size), 0)
	in.Size = size
	in.Generation++
}
