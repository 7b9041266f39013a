package filer

import (
	"encoding/json"
	"syscall"
)

// Snapshots and clones copy metadata only: new inodes with the same slice
// lists, each slice adding a reference to its needle. A snapshot's tree
// lives outside the namespace, reachable from its SnapshotInfo.Root; its
// inodes carry the snapshot id and refuse every change with EROFS. Both
// take time proportional to the number of inodes copied.

// SnapshotInfo describes one snapshot.
type SnapshotInfo struct {
	ID     uint64 `json:"id"`
	Name   string `json:"name"`
	SrcIno uint64 `json:"src_ino"` // the live directory it was taken of
	Root   uint64 `json:"root"`    // the root directory of its tree
	Time   int64  `json:"time"`    // command time, ns
}

func (t *txn) snapshotInfo(id uint64) *SnapshotInfo {
	v := t.snapshots.Get(u64key(id))
	if v == nil {
		return nil
	}
	si := &SnapshotInfo{}
	t.must(json.Unmarshal(v, si))
	return si
}

// copyInode returns a copy of src with a new number, in snapshot snap and
// charged to root, with its own needle references and xattrs; a directory
// copy starts with no entries. The caller stores it.
func (t *txn) copyInode(src *Inode, snap, root uint64) *Inode {
	c := *src
	c.Ino = t.nextIno()
	c.Snapshot = snap
	c.QuotaRoot = root
	c.Slices = nil
	c.Nlink = 1
	if c.IsDir() {
		c.Nlink = 2
	}
	if c.IsRegular() {
		t.copyFileSlices(src.Ino, c.Ino)
	}
	for _, kv := range t.xattrList(src.Ino) {
		t.must(t.xattrs.Put(append(u64key(c.Ino), kv[0]...), kv[1]))
	}
	t.charge(root, int64(c.chargedBytes()), 1)
	return &c
}

// copyTree copies src and, for a directory, everything below it, keeping
// hard links within the tree. The copy's root gets Parent parent (itself
// if 0) and no entry; the caller links it.
func (t *txn) copyTree(src *Inode, snap, root, parent uint64) *Inode {
	top := t.copyInode(src, snap, root)
	if !src.IsDir() {
		t.putInode(top)
		return top
	}
	top.Parent = parent
	if parent == 0 {
		top.Parent = top.Ino
	}
	type job struct{ old, new *Inode }
	links := map[uint64]*Inode{} // source ino -> copy, for files with several links
	stack := []job{{src, top}}
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range t.children(j.old.Ino) {
			c := t.inode(e.Ino)
			var nc *Inode
			switch {
			case c.IsDir():
				nc = t.copyInode(c, snap, root)
				nc.Parent = j.new.Ino
				j.new.Nlink++
				stack = append(stack, job{c, nc})
			case links[c.Ino] != nil:
				nc = links[c.Ino]
				nc.Nlink++
			default:
				nc = t.copyInode(c, snap, root)
				links[c.Ino] = nc
			}
			t.putInode(nc)
			t.putDentry(j.new.Ino, e.Name, nc.Ino)
		}
		t.putInode(j.new)
	}
	return top
}

func (t *txn) snapshot(op *Snapshot) *Result {
	if e := ValidateName(op.Name); e != 0 {
		return errnoResult(e)
	}
	src, e := t.dir(op.SrcIno)
	switch {
	case e != 0:
		return errnoResult(e)
	case src.ReadOnly():
		return errnoResult(syscall.EINVAL)
	}
	exists := false
	t.must(t.snapshots.ForEach(func(_, v []byte) error {
		var si SnapshotInfo
		t.must(json.Unmarshal(v, &si))
		exists = exists || si.Name == op.Name
		return nil
	}))
	if exists {
		return errnoResult(syscall.EEXIST)
	}
	id := keyU64(t.meta.Get(metaNextSnap))
	t.must(t.meta.Put(metaNextSnap, u64key(id+1)))
	root := t.copyTree(src, id, 0, 0)
	si := &SnapshotInfo{ID: id, Name: op.Name, SrcIno: src.Ino, Root: root.Ino, Time: t.now}
	b, err := json.Marshal(si)
	t.must(err)
	t.must(t.snapshots.Put(u64key(id), b))
	return &Result{Snapshot: si, Inode: t.inode(root.Ino)}
}

func (t *txn) clone(op *Clone) *Result {
	var src *Inode
	if op.SnapshotID != 0 {
		si := t.snapshotInfo(op.SnapshotID)
		if si == nil {
			return errnoResult(syscall.ENOENT)
		}
		src = t.inode(si.Root)
	} else {
		var e syscall.Errno
		if src, e = t.liveInode(op.SrcIno); e != 0 {
			return errnoResult(e)
		}
	}
	p, e := t.prepCreate(op.DstParent, op.Name)
	if e != 0 {
		return errnoResult(e)
	}
	c := t.copyTree(src, 0, t.rootOf(p), p.Ino)
	if c.IsDir() {
		p.Nlink++
	}
	t.putDentry(p.Ino, op.Name, c.Ino)
	t.touchDir(p)
	t.putInode(p)
	return t.okInode(c.Ino)
}

func (t *txn) deleteSnapshot(op *DeleteSnapshot) *Result {
	si := t.snapshotInfo(op.ID)
	if si == nil {
		return errnoResult(syscall.ENOENT)
	}
	stack := []uint64{si.Root}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range t.children(dir) {
			t.delDentry(dir, e.Name)
			c := t.inode(e.Ino)
			if c.IsDir() {
				stack = append(stack, c.Ino)
				continue
			}
			c.Nlink--
			if c.Nlink > 0 {
				t.putInode(c)
			} else {
				t.freeInode(c)
			}
		}
		t.freeInode(t.inode(dir))
	}
	t.must(t.snapshots.Delete(u64key(op.ID)))
	return &Result{}
}

// ListSnapshots returns all snapshots in id order.
func (s *State) ListSnapshots() ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	err := s.view(func(t *txn) error {
		return t.snapshots.ForEach(func(_, v []byte) error {
			var si SnapshotInfo
			t.must(json.Unmarshal(v, &si))
			out = append(out, si)
			return nil
		})
	})
	return out, err
}
