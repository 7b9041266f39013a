package filer

import "syscall"

// isUnder reports whether directory ino is anc or lies below it.
func (t *txn) isUnder(ino, anc uint64) bool {
	for range 1 << 20 {
		if ino == anc {
			return true
		}
		d := t.inode(ino)
		if d == nil {
			t.mustf("directory %d is missing", ino)
		}
		if d.Parent == ino {
			return false // a root
		}
		ino = d.Parent
	}
	t.mustf("directory parent chain from %d does not end", ino)
	return false
}

// rename implements renameat2. The checks run in this order, each giving
// the errno Linux gives: flags (EINVAL), names (EINVAL, ENAMETOOLONG),
// parents (ENOENT, ENOTDIR), source (ENOENT), RENAME_NOREPLACE with an
// existing target (EEXIST), RENAME_EXCHANGE without one (ENOENT), a
// read-only parent (EROFS), a directory moved into its own subtree
// (EINVAL), a target that is an ancestor of the source (ENOTEMPTY, EINVAL
// for an exchange), source and target the same inode (success, no change),
// type mismatch (ENOTDIR, EISDIR), a non-empty target directory
// (ENOTEMPTY), quota of the destination (EDQUOT).
func (t *txn) rename(op *Rename) *Result {
	if op.Flags&^(RenameNoReplace|RenameExchange) != 0 || op.Flags == RenameNoReplace|RenameExchange {
		return errnoResult(syscall.EINVAL)
	}
	for _, n := range []string{op.OldName, op.NewName} {
		if e := ValidateName(n); e != 0 {
			return errnoResult(e)
		}
	}
	op1, e := t.dir(op.OldParent)
	if e != 0 {
		return errnoResult(e)
	}
	np, e := t.dir(op.NewParent)
	if e != 0 {
		return errnoResult(e)
	}
	if op1.Ino == np.Ino {
		np = op1
	}
	srcIno := t.lookup(op1.Ino, op.OldName)
	if srcIno == 0 {
		return errnoResult(syscall.ENOENT)
	}
	dstIno := t.lookup(np.Ino, op.NewName)
	exchange := op.Flags&RenameExchange != 0
	switch {
	case op.Flags&RenameNoReplace != 0 && dstIno != 0:
		return errnoResult(syscall.EEXIST)
	case exchange && dstIno == 0:
		return errnoResult(syscall.ENOENT)
	case op1.ReadOnly() || np.ReadOnly():
		return errnoResult(syscall.EROFS)
	}
	src := t.inode(srcIno)
	var dst *Inode
	if dstIno != 0 {
		dst = t.inode(dstIno)
	}
	if src.IsDir() && t.isUnder(np.Ino, src.Ino) {
		return errnoResult(syscall.EINVAL)
	}
	if dst != nil && dst.IsDir() && t.isUnder(op1.Ino, dst.Ino) {
		if exchange {
			return errnoResult(syscall.EINVAL)
		}
		return errnoResult(syscall.ENOTEMPTY)
	}
	if srcIno == dstIno {
		return &Result{Inode: t.withSlices(src)}
	}
	if exchange {
		t.exchange(op, op1, np, src, dst)
		return t.okInode(src.Ino)
	}
	if dst != nil {
		switch {
		case src.IsDir() && !dst.IsDir():
			return errnoResult(syscall.ENOTDIR)
		case !src.IsDir() && dst.IsDir():
			return errnoResult(syscall.EISDIR)
		case dst.IsDir() && t.hasChildren(dst.Ino):
			return errnoResult(syscall.ENOTEMPTY)
		}
		t.delDentry(np.Ino, op.NewName)
		if dst.IsDir() {
			np.Nlink--
			t.removeDir(dst, t.rootOf(np))
		} else {
			t.dropLink(dst, op.KeepIfOpen)
		}
	}
	t.delDentry(op1.Ino, op.OldName)
	t.putDentry(np.Ino, op.NewName, src.Ino)
	t.moveInode(src, op1, np)
	src.Ctime = t.now
	t.touchDir(op1)
	t.touchDir(np)
	t.putInode(src)
	t.putInode(op1)
	if np != op1 {
		t.putInode(np)
	}
	return t.okInode(src.Ino)
}

// moveInode updates parent links and quota charges of in, whose entry
// moved from directory from to directory to; the caller stores all three.
func (t *txn) moveInode(in, from, to *Inode) {
	if in.IsDir() && from.Ino != to.Ino {
		from.Nlink--
		to.Nlink++
		in.Parent = to.Ino
	}
	root := t.rootOf(to)
	switch {
	case in.QuotaRoot == root:
	case !in.IsDir():
		t.recharge(in, root)
	case !t.isQuotaRoot(in.Ino):
		t.rechargeTree(in, in.QuotaRoot, root)
	}
}

// exchange swaps two entries (RENAME_EXCHANGE).
func (t *txn) exchange(op *Rename, op1, np, src, dst *Inode) {
	t.putDentry(op1.Ino, op.OldName, dst.Ino)
	t.putDentry(np.Ino, op.NewName, src.Ino)
	t.moveInode(src, op1, np)
	t.moveInode(dst, np, op1)
	src.Ctime, dst.Ctime = t.now, t.now
	t.touchDir(op1)
	t.touchDir(np)
	t.putInode(src)
	t.putInode(dst)
	t.putInode(op1)
	if np != op1 {
		t.putInode(np)
	}
}
