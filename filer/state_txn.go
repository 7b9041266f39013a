package filer

import (
	"fmt"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// txn wraps one bbolt transaction with typed accessors. IO errors of the
// state file panic with a txError and are turned back into errors by
// catch, so the namespace code reads as straight-line logic.
type txn struct {
	tx  *bolt.Tx
	now int64 // command time, ns

	inodes, dentries, xattrs, refs, deleteq, quotas, sessions, snapshots, orphans, uploads, meta *bolt.Bucket
	// pieces is the slices bucket: the visible pieces of regular files.
	pieces *bolt.Bucket
	// inline holds the bytes of inline slices (inline.go).
	inline *bolt.Bucket

	// usage accumulates quota usage changes per quota root; applied and
	// checked against the limits by finishQuota.
	usage map[uint64]*usageDelta
	roots []uint64 // keys of usage in first-charged order (deterministic)
}

type usageDelta struct{ bytes, inodes int64 }

type txError struct{ err error }

func newTxn(tx *bolt.Tx, now int64) *txn {
	return &txn{
		tx: tx, now: now,
		inodes: tx.Bucket(bucketInodes), dentries: tx.Bucket(bucketDentries),
		xattrs: tx.Bucket(bucketXattrs), refs: tx.Bucket(bucketRefs),
		deleteq: tx.Bucket(bucketDeleteQ), quotas: tx.Bucket(bucketQuotas),
		sessions: tx.Bucket(bucketSessions), snapshots: tx.Bucket(bucketSnapshots),
		orphans: tx.Bucket(bucketOrphans), uploads: tx.Bucket(bucketUploads), meta: tx.Bucket(bucketMeta),
		pieces: tx.Bucket(bucketSlices), inline: tx.Bucket(bucketInline),
	}
}

// catch runs fn and turns a txError panic into an error.
func catch(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			te, ok := r.(txError)
			if !ok {
				panic(r)
			}
			err = te.err
		}
	}()
	return fn()
}

func (t *txn) must(err error) {
	if err != nil {
		panic(txError{err})
	}
}

func (t *txn) mustf(format string, args ...any) {
	panic(txError{fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)})
}

// inode returns inode ino or nil.
func (t *txn) inode(ino uint64) *Inode {
	v := t.inodes.Get(u64key(ino))
	if v == nil {
		return nil
	}
	in := &Inode{}
	t.must(decodeInode(v, in))
	return in
}

// putInode stores in. Its Slices are not stored (a regular file's pieces
// live in the slices bucket); they may hold an answer's copy.
func (t *txn) putInode(in *Inode) {
	t.must(t.inodes.Put(u64key(in.Ino), encodeInode(in)))
}

// metaU64 returns the number kept under key in the meta bucket, 0 when
// there is none.
func (t *txn) metaU64(key []byte) uint64 {
	if v := t.meta.Get(key); v != nil {
		return keyU64(v)
	}
	return 0
}

func (t *txn) nextIno() uint64 {
	ino := keyU64(t.meta.Get(metaNextIno))
	t.must(t.meta.Put(metaNextIno, u64key(ino+1)))
	return ino
}

// lookup returns the child ino of entry name in dir, or 0.
func (t *txn) lookup(dir uint64, name string) uint64 {
	v := t.dentries.Get(dentryKey(dir, name))
	if v == nil {
		return 0
	}
	return keyU64(v)
}

func (t *txn) putDentry(dir uint64, name string, child uint64) {
	t.must(t.dentries.Put(dentryKey(dir, name), u64key(child)))
}

func (t *txn) delDentry(dir uint64, name string) {
	t.must(t.dentries.Delete(dentryKey(dir, name)))
}

// children returns the entries of dir in name order.
func (t *txn) children(dir uint64) []DirEntry {
	var out []DirEntry
	prefix := u64key(dir)
	c := t.dentries.Cursor()
	for k, v := c.Seek(prefix); k != nil && len(k) >= 8 && keyU64(k) == dir; k, v = c.Next() {
		out = append(out, DirEntry{Name: string(k[8:]), Ino: keyU64(v)})
	}
	return out
}

func (t *txn) hasChildren(dir uint64) bool {
	k, _ := t.dentries.Cursor().Seek(u64key(dir))
	return k != nil && len(k) >= 8 && keyU64(k) == dir
}

// liveInode returns inode ino if it exists (orphans included).
func (t *txn) liveInode(ino uint64) (*Inode, syscall.Errno) {
	in := t.inode(ino)
	if in == nil {
		return nil, syscall.ENOENT
	}
	return in, 0
}

// dir returns directory ino, or ENOENT / ENOTDIR.
func (t *txn) dir(ino uint64) (*Inode, syscall.Errno) {
	d := t.inode(ino)
	if d == nil {
		return nil, syscall.ENOENT
	}
	if !d.IsDir() {
		return nil, syscall.ENOTDIR
	}
	return d, 0
}

// touchDir sets a directory's mtime and ctime to the command time.
func (t *txn) touchDir(d *Inode) {
	d.Mtime, d.Ctime = t.now, t.now
}

// deleteXattrs removes every xattr of ino.
func (t *txn) deleteXattrs(ino uint64) {
	var keys [][]byte
	c := t.xattrs.Cursor()
	for k, _ := c.Seek(u64key(ino)); k != nil && keyU64(k) == ino; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		t.must(t.xattrs.Delete(k))
	}
}

// xattrList returns the xattrs of ino as name/value pairs in name order.
func (t *txn) xattrList(ino uint64) [][2][]byte {
	var out [][2][]byte
	c := t.xattrs.Cursor()
	for k, v := c.Seek(u64key(ino)); k != nil && keyU64(k) == ino; k, v = c.Next() {
		out = append(out, [2][]byte{append([]byte(nil), k[8:]...), append([]byte(nil), v...)})
	}
	return out
}

// freeInode deletes an inode whose last link is gone: its xattrs, its
// references to needles and its quota charge.
func (t *txn) freeInode(in *Inode) {
	t.dropFileSlices(in.Ino)
	t.deleteXattrs(in.Ino)
	if in.QuotaRoot != 0 {
		t.charge(in.QuotaRoot, -int64(in.chargedBytes()), -1)
	}
	t.must(t.orphans.Delete(u64key(in.Ino)))
	t.must(t.inodes.Delete(u64key(in.Ino)))
}

// apply dispatches one operation.
func (t *txn) apply(op Op) *Result {
	var r *Result
	switch op := op.(type) {
	case *Mkdir:
		r = t.mkdir(op)
	case *Create:
		r = t.create(op)
	case *Symlink:
		r = t.symlink(op)
	case *Link:
		r = t.link(op)
	case *Unlink:
		r = t.unlink(op)
	case *Rmdir:
		r = t.rmdir(op)
	case *Rename:
		r = t.rename(op)
	case *SetAttr:
		r = t.setAttr(op)
	case *CommitSlices:
		r = t.commitSlices(op)
	case *PunchHole:
		r = t.punchHole(op)
	case *Fallocate:
		r = t.fallocate(op)
	case *ReplaceSlices:
		r = t.replaceSlices(op)
	case *SetXattr:
		r = t.setXattr(op)
	case *RemoveXattr:
		r = t.removeXattr(op)
	case *SetQuota:
		r = t.setQuota(op)
	case *Snapshot:
		r = t.snapshot(op)
	case *Clone:
		r = t.clone(op)
	case *DeleteSnapshot:
		r = t.deleteSnapshot(op)
	case *DequeueDeleted:
		r = t.dequeueDeleted(op)
	case *BeginUpload:
		r = t.beginUpload(op)
	case *ExpireUploads:
		r = t.expireUploads(op)
	case *ExpireSessions:
		r = t.expireSessions(op)
	case *ReleaseOrphan:
		r = t.releaseOrphan(op)
	case *CreateTmp:
		r = t.createTmp(op)
	case *FixRefs:
		r = t.fixRefs(op)
	default:
		return errnoResult(syscall.EINVAL)
	}
	if r.Errno == 0 {
		if e := t.finishQuota(); e != 0 {
			return errnoResult(e)
		}
	}
	return r
}

// okInode is a success result carrying the current inode ino, with its
// slice list.
func (t *txn) okInode(ino uint64) *Result {
	return &Result{Inode: t.withSlices(t.inode(ino))}
}
