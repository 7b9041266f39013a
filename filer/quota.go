package filer

// Quotas. A quota root is a directory with a Quota record; the root
// directory of the namespace always is one (unlimited unless set). Every
// live inode is charged to exactly one quota root, recorded in
// Inode.QuotaRoot:
//
//   - a directory is charged to the nearest quota root among itself and
//     its ancestors (so a quota root counts itself);
//   - a new file or symlink is charged to the nearest quota root of the
//     directory it is created in; renaming it moves the charge to the
//     nearest root of the new parent; a hard link does not move it;
//   - renaming a directory moves the charges of its subtree (down to, not
//     into, nested quota roots) from the old root to the new one.
//
// A root's usage is the sum over the inodes charged to it: Inodes is their
// number, Bytes the st_size of the regular files and the target length of
// the symlinks. Usage is exact. A command that would raise a root's usage
// above a non-zero limit fails with EDQUOT and changes nothing; commands
// that lower usage always succeed. Snapshot inodes are charged to none.

import (
	"encoding/json"
	"syscall"
)

// Quota is the limits (0: unlimited) and usage of a quota root.
type Quota struct {
	MaxBytes  uint64 `json:"max_bytes,omitempty"`
	MaxInodes uint64 `json:"max_inodes,omitempty"`
	Bytes     uint64 `json:"bytes"`
	Inodes    uint64 `json:"inodes"`
}

// Statfs is the quota root of an inode and its quota.
type Statfs struct {
	Root uint64 `json:"root"`
	Quota
}

func (t *txn) quota(root uint64) *Quota {
	v := t.quotas.Get(u64key(root))
	if v == nil {
		return nil
	}
	q := &Quota{}
	t.must(json.Unmarshal(v, q))
	return q
}

func (t *txn) putQuota(root uint64, q *Quota) {
	b, err := json.Marshal(q)
	t.must(err)
	t.must(t.quotas.Put(u64key(root), b))
}

func (t *txn) isQuotaRoot(ino uint64) bool { return t.quotas.Get(u64key(ino)) != nil }

// rootOf returns the quota root that inodes created in directory d are
// charged to (0 in a snapshot).
func (t *txn) rootOf(d *Inode) uint64 {
	if t.isQuotaRoot(d.Ino) {
		return d.Ino
	}
	return d.QuotaRoot
}

// charge records a usage change of root, applied by finishQuota.
func (t *txn) charge(root uint64, bytes, inodes int64) {
	if root == 0 || bytes == 0 && inodes == 0 {
		return
	}
	if t.usage == nil {
		t.usage = map[uint64]*usageDelta{}
	}
	d, ok := t.usage[root]
	if !ok {
		d = &usageDelta{}
		t.usage[root] = d
		t.roots = append(t.roots, root)
	}
	d.bytes += bytes
	d.inodes += inodes
}

// finishQuota applies the usage changes of the command, or returns EDQUOT
// if one raises a usage above its limit.
func (t *txn) finishQuota() syscall.Errno {
	for _, root := range t.roots {
		d := t.usage[root]
		q := t.quota(root)
		if q == nil {
			t.mustf("inode charged to %d, which is not a quota root", root)
		}
		bytes, inodes := int64(q.Bytes)+d.bytes, int64(q.Inodes)+d.inodes
		if bytes < 0 || inodes < 0 {
			t.mustf("quota usage of %d below zero", root)
		}
		if d.bytes > 0 && q.MaxBytes > 0 && uint64(bytes) > q.MaxBytes ||
			d.inodes > 0 && q.MaxInodes > 0 && uint64(inodes) > q.MaxInodes {
			return syscall.EDQUOT
		}
		q.Bytes, q.Inodes = uint64(bytes), uint64(inodes)
		t.putQuota(root, q)
	}
	t.usage, t.roots = nil, nil
	return 0
}

// recharge moves the charge of in to root; the caller stores in.
func (t *txn) recharge(in *Inode, root uint64) {
	t.charge(in.QuotaRoot, -int64(in.chargedBytes()), -1)
	t.charge(root, int64(in.chargedBytes()), 1)
	in.QuotaRoot = root
}

// rechargeTree moves the charges of directory d (stored by the caller)
// and of the inodes below it that are charged to from, to root to. It does
// not descend into nested quota roots.
func (t *txn) rechargeTree(d *Inode, from, to uint64) {
	if d.QuotaRoot == from {
		t.recharge(d, to)
	}
	stack := []uint64{d.Ino}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range t.children(dir) {
			if t.isQuotaRoot(e.Ino) {
				continue
			}
			c := t.inode(e.Ino)
			if c.QuotaRoot == from {
				t.recharge(c, to)
				t.putInode(c)
			}
			if c.IsDir() {
				stack = append(stack, c.Ino)
			}
		}
	}
}

// removeQuotaRoot drops quota root q; the inodes still charged to it move
// to root to. It scans all inodes, as hard links may have left files
// charged to q outside its subtree.
func (t *txn) removeQuotaRoot(q, to uint64) {
	var charged []*Inode
	t.must(t.inodes.ForEach(func(_, v []byte) error {
		in := &Inode{}
		t.must(decodeInode(v, in))
		if in.QuotaRoot == q {
			charged = append(charged, in)
		}
		return nil
	}))
	for _, in := range charged {
		t.recharge(in, to)
		t.putInode(in)
	}
	// Settle q's usage now, then drop it with its pending changes.
	if d := t.usage[q]; d != nil {
		qq := t.quota(q)
		if int64(qq.Bytes)+d.bytes != 0 || int64(qq.Inodes)+d.inodes != 0 {
			t.mustf("quota root %d still has usage after removal", q)
		}
		delete(t.usage, q)
		for i, r := range t.roots {
			if r == q {
				t.roots = append(t.roots[:i], t.roots[i+1:]...)
				break
			}
		}
	}
	t.must(t.quotas.Delete(u64key(q)))
}

func (t *txn) setQuota(op *SetQuota) *Result {
	d, e := t.dir(op.Ino)
	if e != 0 {
		return errnoResult(e)
	}
	if d.ReadOnly() {
		return errnoResult(syscall.EROFS)
	}
	q := t.quota(d.Ino)
	switch {
	case op.Remove && d.Ino == RootIno:
		return errnoResult(syscall.EINVAL)
	case op.Remove && q == nil:
		return errnoResult(syscall.ENOENT)
	case op.Remove:
		t.removeQuotaRoot(d.Ino, t.rootOf(t.inode(d.Parent)))
		return t.okInode(d.Ino)
	case q != nil:
		q.MaxBytes, q.MaxInodes = op.MaxBytes, op.MaxInodes
		t.putQuota(d.Ino, q)
		return t.okInode(d.Ino)
	}
	t.putQuota(d.Ino, &Quota{MaxBytes: op.MaxBytes, MaxInodes: op.MaxInodes})
	from := d.QuotaRoot
	t.rechargeTree(d, from, d.Ino)
	t.putInode(d)
	// Moving existing usage under a new limit is not growth: accept it
	// even when it is already above the limit.
	if u := t.usage[d.Ino]; u != nil {
		q := t.quota(d.Ino)
		q.Bytes, q.Inodes = uint64(u.bytes), uint64(u.inodes)
		t.putQuota(d.Ino, q)
		u.bytes, u.inodes = 0, 0
	}
	return t.okInode(d.Ino)
}
