package filer

import (
	"syscall"
)

// Xattr limits, as Linux.
const (
	MaxXattrNameLen  = 255
	MaxXattrValueLen = 64 << 10
)

// regular returns regular file ino for a data change: ENOENT, EISDIR for a
// directory, EINVAL for a symlink, EROFS in a snapshot.
func (t *txn) regular(ino uint64) (*Inode, syscall.Errno) {
	in, e := t.liveInode(ino)
	switch {
	case e != 0:
		return nil, e
	case in.IsDir():
		return nil, syscall.EISDIR
	case !in.IsRegular():
		return nil, syscall.EINVAL
	case in.ReadOnly():
		return nil, syscall.EROFS
	}
	return in, 0
}

func (t *txn) commitSlices(op *CommitSlices) *Result {
	in, e := t.regular(op.Ino)
	if e != 0 {
		return errnoResult(e)
	}
	if op.Size > MaxFileSize {
		return errnoResult(syscall.EFBIG)
	}
	size := max(in.Size, op.Size)
	if op.Truncate {
		size = op.Size
	}
	for _, s := range op.Slices {
		if e := validateSlice(s); e != 0 {
			return errnoResult(e)
		}
		if e := t.checkRef(s); e != 0 {
			return errnoResult(e)
		}
		size = max(size, s.end())
	}
	inl, e := checkInline(op.Inline)
	if e != 0 {
		return errnoResult(e)
	}
	for _, s := range inl {
		size = max(size, s.end())
	}
	sl, fids := t.storeInlineSlices(op.Slices, op.Inline)
	t.addSlices(sl) // before removing pieces: a needle in both never reaches zero
	if op.Truncate {
		t.clearRange(in.Ino, 0, MaxFileSize)
	}
	t.placeSlices(in.Ino, sl)
	t.setData(in, size)
	in.Mtime = t.now
	if op.Mtime != 0 {
		in.Mtime = op.Mtime
	}
	in.Ctime = t.now
	t.putInode(in)
	if op.OmitSlices {
		return &Result{Inode: in, Fids: fids}
	}
	return &Result{Inode: t.withSlices(in), Fids: fids}
}

// setData finishes a change of in's data: the size becomes size and the
// generation is bumped. The pieces are already changed.
func (t *txn) setData(in *Inode, size uint64) {
	t.charge(in.QuotaRoot, int64(size)-int64(in.Size), 0)
	in.Size = size
	in.Generation++
}

func (t *txn) punchHole(op *PunchHole) *Result {
	in, e := t.regular(op.Ino)
	switch {
	case e != 0:
		return errnoResult(e)
	case op.Len == 0 || op.Off+op.Len < op.Off:
		return errnoResult(syscall.EINVAL)
	}
	if end := min(op.Off+op.Len, in.Size); op.Off < end {
		t.clearRange(in.Ino, op.Off, end)
		t.setData(in, in.Size)
	}
	in.Mtime, in.Ctime = t.now, t.now
	t.putInode(in)
	return t.okInode(in.Ino)
}

func (t *txn) fallocate(op *Fallocate) *Result {
	switch op.Mode {
	case 0, FallocKeepSize:
	case FallocPunchHole | FallocKeepSize:
		return t.punchHole(&PunchHole{Ino: op.Ino, Off: op.Off, Len: op.Len})
	default:
		return errnoResult(syscall.EOPNOTSUPP)
	}
	in, e := t.regular(op.Ino)
	switch {
	case e != 0:
		return errnoResult(e)
	case op.Len == 0 || op.Off+op.Len < op.Off:
		return errnoResult(syscall.EINVAL)
	case op.Off+op.Len > MaxFileSize:
		return errnoResult(syscall.EFBIG)
	}
	if end := op.Off + op.Len; op.Mode == 0 && end > in.Size {
		t.setData(in, end)
		in.Ctime = t.now
		t.putInode(in)
	}
	return t.okInode(in.Ino)
}

func (t *txn) replaceSlices(op *ReplaceSlices) *Result {
	in, e := t.regular(op.Ino)
	switch {
	case e != 0:
		return errnoResult(e)
	case in.Generation != op.ExpectGeneration:
		return errnoResult(syscall.EAGAIN)
	}
	for _, s := range op.NewSlices {
		if e := validateSlice(s); e != 0 {
			return errnoResult(e)
		}
		if s.end() > in.Size {
			return errnoResult(syscall.EINVAL)
		}
		if e := t.checkRef(s); e != 0 {
			return errnoResult(e)
		}
	}
	t.addSlices(op.NewSlices) // before dropping the old ones: they may share fids
	t.clearRange(in.Ino, 0, MaxFileSize)
	t.placeSlices(in.Ino, op.NewSlices)
	t.setData(in, in.Size)
	t.putInode(in)
	return t.okInode(in.Ino)
}

// xattrInode returns inode ino for an xattr change.
func (t *txn) xattrInode(ino uint64, name string) (*Inode, syscall.Errno) {
	in, e := t.liveInode(ino)
	switch {
	case e != 0:
		return nil, e
	case name == "" || len(name) > MaxXattrNameLen:
		return nil, syscall.ERANGE
	case in.ReadOnly():
		return nil, syscall.EROFS
	}
	return in, 0
}

func (t *txn) setXattr(op *SetXattr) *Result {
	in, e := t.xattrInode(op.Ino, op.Name)
	if e != 0 {
		return errnoResult(e)
	}
	key := append(u64key(in.Ino), op.Name...)
	exists := t.xattrs.Get(key) != nil
	switch {
	case op.Flags&^(XattrCreate|XattrReplace) != 0 || op.Flags == XattrCreate|XattrReplace:
		return errnoResult(syscall.EINVAL)
	case len(op.Value) > MaxXattrValueLen:
		return errnoResult(syscall.E2BIG)
	case op.Flags == XattrCreate && exists:
		return errnoResult(syscall.EEXIST)
	case op.Flags == XattrReplace && !exists:
		return errnoResult(syscall.ENODATA)
	}
	t.must(t.xattrs.Put(key, append([]byte{}, op.Value...)))
	in.Ctime = t.now
	t.putInode(in)
	return t.okInode(in.Ino)
}

func (t *txn) removeXattr(op *RemoveXattr) *Result {
	in, e := t.xattrInode(op.Ino, op.Name)
	if e != 0 {
		return errnoResult(e)
	}
	key := append(u64key(in.Ino), op.Name...)
	if t.xattrs.Get(key) == nil {
		return errnoResult(syscall.ENODATA)
	}
	t.must(t.xattrs.Delete(key))
	in.Ctime = t.now
	t.putInode(in)
	return t.okInode(in.Ino)
}
