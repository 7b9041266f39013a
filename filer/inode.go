package filer

import (
	"encoding/binary"
	"encoding/json"
	"syscall"
)

// RootIno is the inode number of the root directory of the namespace.
const RootIno uint64 = 1

// Inode is the metadata of one file, directory or symlink.
type Inode struct {
	Ino   uint64 `json:"ino"`
	Mode  uint32 `json:"mode"` // syscall.S_IF* type bits plus permission bits
	Uid   uint32 `json:"uid"`
	Gid   uint32 `json:"gid"`
	Nlink uint32 `json:"nlink"`
	// Size is the file size for regular files, len(Target) for symlinks and
	// 0 for directories.
	Size  uint64 `json:"size"`
	Atime int64  `json:"atime"` // ns since the epoch
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
	// Target is the symlink target.
	Target string `json:"target,omitempty"`
	// Parent is, for a directory, the directory holding its entry (itself
	// for the root and for snapshot roots). Zero for other types.
	Parent uint64 `json:"parent,omitempty"`
	// Slices make up the data of a regular file, as the filer answers
	// them: its visible pieces in offset order, never overlapping, holes
	// left out. They are stored apart from the inode record (the slices
	// bucket, slicestore.go) and filled in for answers.
	Slices SliceList `json:"slices,omitempty"`
	// Generation is bumped by every change of Slices or Size, so a
	// compactor can swap the slice list only if the file is unchanged.
	Generation uint64 `json:"gen"`
	// QuotaRoot is the quota root this inode is charged to; 0 for inodes
	// of snapshots, which are charged to none.
	QuotaRoot uint64 `json:"quota_root,omitempty"`
	// Snapshot is the id of the snapshot this inode belongs to; such inodes
	// are read-only (EROFS). Zero for the live namespace.
	Snapshot uint64 `json:"snapshot,omitempty"`
}

// Type returns the S_IFMT bits of the mode.
func (in *Inode) Type() uint32 { return in.Mode & syscall.S_IFMT }

// IsDir reports whether the inode is a directory.
func (in *Inode) IsDir() bool { return in.Type() == syscall.S_IFDIR }

// IsRegular reports whether the inode is a regular file.
func (in *Inode) IsRegular() bool { return in.Type() == syscall.S_IFREG }

// IsSymlink reports whether the inode is a symbolic link.
func (in *Inode) IsSymlink() bool { return in.Type() == syscall.S_IFLNK }

// ReadOnly reports whether the inode belongs to a snapshot.
func (in *Inode) ReadOnly() bool { return in.Snapshot != 0 }

// chargedBytes is what the inode counts against its quota root.
func (in *Inode) chargedBytes() uint64 {
	if in.IsDir() {
		return 0
	}
	return in.Size
}

// DirEntry is one entry returned by ReadDir.
type DirEntry struct {
	Name string `json:"name"`
	Ino  uint64 `json:"ino"`
	Mode uint32 `json:"mode"`
}

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func keyU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// dentryKey is parent ino (8 bytes, big endian) followed by the name, so
// the entries of one directory are contiguous and sorted by name.
func dentryKey(parent uint64, name string) []byte {
	return append(u64key(parent), name...)
}

// encodeInode gives the stored form of an inode: its JSON without the
// slice list (a regular file's slices live in the slices bucket).
func encodeInode(in *Inode) []byte {
	head := *in
	head.Slices = nil
	b, err := json.Marshal(&head)
	if err != nil {
		panic(err) // Inode has no unencodable fields
	}
	return b
}

// decodeInode decodes a stored inode into in. A state of the current
// format stores no slice list in an inode; one of the embedded format
// (formatEmbedded) may, as a base64 string or an array of objects, which
// SliceList decodes. v is not modified (it may be the state file's
// read-only memory map).
func decodeInode(v []byte, in *Inode) error {
	return json.Unmarshal(v, in)
}
