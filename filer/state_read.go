package filer

import (
	"syscall"
)

// Reads run on a consistent read transaction. Their errors are
// syscall.Errno values (ENOENT, ENOTDIR, ...) or IO errors of the state
// file.

// GetAttr returns inode ino (orphans included) with its slice list.
func (s *State) GetAttr(ino uint64) (*Inode, error) { return s.getAttr(ino, true) }

// Attr returns inode ino without its slice list: what a stat needs, at a
// cost that does not grow with the file's fragmentation.
func (s *State) Attr(ino uint64) (*Inode, error) { return s.getAttr(ino, false) }

func (s *State) getAttr(ino uint64, withSlices bool) (*Inode, error) {
	var in *Inode
	err := s.view(func(t *txn) error {
		if in = t.inode(ino); in == nil {
			return syscall.ENOENT
		}
		if withSlices {
			in = t.withSlices(in)
		}
		return nil
	})
	return in, err
}

// Lookup returns the inode of entry name in directory parent, with its
// slice list.
func (s *State) Lookup(parent uint64, name string) (*Inode, error) {
	return s.lookup(parent, name, true)
}

// LookupAttr is Lookup without the slice list.
func (s *State) LookupAttr(parent uint64, name string) (*Inode, error) {
	return s.lookup(parent, name, false)
}

func (s *State) lookup(parent uint64, name string, withSlices bool) (*Inode, error) {
	var in *Inode
	err := s.view(func(t *txn) error {
		if e := ValidateName(name); e != 0 {
			return e
		}
		if _, e := t.dir(parent); e != 0 {
			return e
		}
		ino := t.lookup(parent, name)
		if ino == 0 {
			return syscall.ENOENT
		}
		if in = t.inode(ino); in != nil && withSlices {
			in = t.withSlices(in)
		}
		return nil
	})
	return in, err
}

// ReadDir returns up to limit entries (all if limit <= 0) of directory ino
// with names after the cursor after, in byte order of the names. Resuming
// from the last name returned is stable while entries are added and
// removed: every entry present throughout is returned exactly once.
func (s *State) ReadDir(ino uint64, after string, limit int) ([]DirEntry, error) {
	var out []DirEntry
	err := s.view(func(t *txn) error {
		if _, e := t.dir(ino); e != 0 {
			return e
		}
		c := t.dentries.Cursor()
		k, v := c.Seek(dentryKey(ino, after))
		if k != nil && after != "" && string(k[8:]) == after && keyU64(k) == ino {
			k, v = c.Next()
		}
		for ; k != nil && keyU64(k) == ino && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			child := t.inode(keyU64(v))
			if child == nil {
				t.mustf("entry %q of %d points at missing inode", k[8:], ino)
			}
			out = append(out, DirEntry{Name: string(k[8:]), Ino: child.Ino, Mode: child.Mode})
		}
		return nil
	})
	return out, err
}

// Readlink returns the target of symlink ino (EINVAL if not a symlink).
func (s *State) Readlink(ino uint64) (string, error) {
	in, err := s.GetAttr(ino)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", syscall.EINVAL
	}
	return in.Target, nil
}

// GetXattr returns xattr name of ino (ENODATA if absent).
func (s *State) GetXattr(ino uint64, name string) ([]byte, error) {
	var val []byte
	err := s.view(func(t *txn) error {
		if t.inode(ino) == nil {
			return syscall.ENOENT
		}
		v := t.xattrs.Get(append(u64key(ino), name...))
		if v == nil {
			return syscall.ENODATA
		}
		val = append([]byte{}, v...)
		return nil
	})
	return val, err
}

// ListXattr returns the xattr names of ino in byte order.
func (s *State) ListXattr(ino uint64) ([]string, error) {
	var names []string
	err := s.view(func(t *txn) error {
		if t.inode(ino) == nil {
			return syscall.ENOENT
		}
		for _, kv := range t.xattrList(ino) {
			names = append(names, string(kv[0]))
		}
		return nil
	})
	return names, err
}

// Statfs returns the quota root ino is charged to and its limits and
// usage. For a quota root that is the root itself. Snapshot inodes report
// the quota of the snapshot's source when it still exists, else the
// namespace root's.
func (s *State) Statfs(ino uint64) (*Statfs, error) {
	var st *Statfs
	err := s.view(func(t *txn) error {
		in := t.inode(ino)
		if in == nil {
			return syscall.ENOENT
		}
		root := in.QuotaRoot
		if in.IsDir() && t.isQuotaRoot(in.Ino) {
			root = in.Ino
		}
		if in.ReadOnly() {
			root = RootIno
			if si := t.snapshotInfo(in.Snapshot); si != nil {
				if src := t.inode(si.SrcIno); src != nil && src.Snapshot == 0 {
					root = t.rootOf(src)
				}
			}
		}
		q := t.quota(root)
		if q == nil {
			t.mustf("inode %d charged to %d, which is not a quota root", ino, root)
		}
		st = &Statfs{Root: root, Quota: *q}
		return nil
	})
	return st, err
}

// Orphans returns the inodes unlinked while open, in inode order.
func (s *State) Orphans() ([]uint64, error) {
	var out []uint64
	err := s.view(func(t *txn) error {
		return t.orphans.ForEach(func(k, _ []byte) error {
			out = append(out, keyU64(k))
			return nil
		})
	})
	return out, err
}

// Resolve returns the inode at absolute path p (cleaned by CleanPath),
// walking from the root. Symlinks are not followed: a symlink as an inner
// component gives ENOTDIR, as the last one it is returned itself.
func (s *State) Resolve(p string) (*Inode, error) {
	clean, err := CleanPath(p)
	if err != nil {
		return nil, err
	}
	var in *Inode
	err = s.view(func(t *txn) error {
		in = t.inode(RootIno)
		for _, name := range splitPath(clean) {
			if !in.IsDir() {
				return syscall.ENOTDIR
			}
			ino := t.lookup(in.Ino, name)
			if ino == 0 {
				return syscall.ENOENT
			}
			in = t.inode(ino)
		}
		t.withSlices(in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// IsUnder reports whether directory ino is anc or lies below it. A
// directory that does not exist (any more) is under nothing.
func (s *State) IsUnder(ino, anc uint64) bool {
	var under bool
	err := s.view(func(t *txn) error {
		if t.inode(ino) == nil {
			return nil
		}
		under = t.isUnder(ino, anc)
		return nil
	})
	return err == nil && under
}
