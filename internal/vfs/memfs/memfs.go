// Package memfs is an in-memory vfs.FS that simulates power loss.
//
// It keeps, for every file, its current content and its content as of the
// last Sync, and for every directory its current entries and its entries as
// of the last SyncDir. Creating, renaming and removing files or directories
// is durable only once the parent directory is synced: a file that was
// synced but whose directory entry was not is lost in a crash. CrashClone
// returns a new FS holding only what is durable.
package memfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// Unlimited is the free space FreeBytes reports when no capacity is set.
const Unlimited = 1 << 50

// node is a file or a directory (an inode).
type node struct {
	isDir  bool
	data   []byte // current content
	synced []byte // content as of the last Sync
}

// FS is an in-memory filesystem. Paths are cleaned with path.Clean; relative
// paths are relative to "/". The zero value is not usable: call New.
type FS struct {
	mu sync.Mutex // guards everything below and the content of every node
	// cur is the current namespace, durable the namespace as of the last
	// SyncDir of each parent. Both map a clean path to its node.
	cur, durable map[string]*node
	capacity     int64 // 0: unlimited
}

var _ vfs.FS = (*FS)(nil)

// New returns an empty filesystem holding only the root directory.
func New() *FS {
	root := &node{isDir: true}
	return &FS{
		cur:     map[string]*node{"/": root},
		durable: map[string]*node{"/": root},
	}
}

// SetCapacity limits the total size of all files to capacity bytes; writes
// that would grow past it fail with ENOSPC. 0 means unlimited.
func (m *FS) SetCapacity(capacity int64) {
	m.mu.Lock()
	m.capacity = capacity
	m.mu.Unlock()
}

// CrashOptions tune CrashClone.
type CrashOptions struct {
	// Rand, if set, keeps a random prefix of the bytes appended to each file
	// since its last Sync (a torn write); nil keeps none.
	Rand *rand.Rand
}

// CrashClone returns a new filesystem holding what would survive a power
// loss now: the durable namespace with every file's synced content. It is
// atomic with respect to the other operations.
func (m *FS) CrashClone(opts CrashOptions) *FS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := New()
	// Visit parents before children; drop entries whose parent is gone.
	names := make([]string, 0, len(m.durable))
	for name := range m.durable {
		names = append(names, name)
	}
	sort.Strings(names)
	clones := make(map[*node]*node) // hard-link-free, but keep identity anyway
	for _, name := range names {
		if name == "/" {
			continue
		}
		if p := c.cur[path.Dir(name)]; p == nil || !p.isDir {
			continue
		}
		n := m.durable[name]
		cn := clones[n]
		if cn == nil {
			cn = &node{isDir: n.isDir}
			if !n.isDir {
				cn.data = tornContent(n, opts.Rand)
				cn.synced = bytes.Clone(cn.data)
			}
			clones[n] = cn
		}
		c.cur[name] = cn
		c.durable[name] = cn
	}
	return c
}

// tornContent is n's synced content plus, with r set and when the current
// content extends the synced one, a random prefix of the extension.
func tornContent(n *node, r *rand.Rand) []byte {
	out := bytes.Clone(n.synced)
	if out == nil {
		out = []byte{}
	}
	if r == nil || len(n.data) <= len(n.synced) || !bytes.Equal(n.data[:len(n.synced)], n.synced) {
		return out
	}
	extra := n.data[len(n.synced):]
	k := r.IntN(len(extra) + 1)
	return append(out, extra[:k]...)
}

func clean(name string) string {
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return path.Clean(name)
}

func pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: name, Err: err}
}

// parentDirLocked checks that name's parent exists and is a directory.
func (m *FS) parentDirLocked(op, name string) error {
	p := m.cur[path.Dir(name)]
	if p == nil {
		return pathErr(op, name, fs.ErrNotExist)
	}
	if !p.isDir {
		return pathErr(op, name, syscall.ENOTDIR)
	}
	return nil
}

func (m *FS) usedLocked() int64 {
	var used int64
	for _, n := range m.cur {
		used += int64(len(n.data))
	}
	return used
}

// OpenFile implements vfs.FS. Supported flags: O_RDONLY, O_WRONLY, O_RDWR,
// O_CREATE, O_EXCL, O_TRUNC.
func (m *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	name = clean(name)
	if flag&os.O_APPEND != 0 {
		return nil, fmt.Errorf("vfs: open %s: %w", name, vfs.ErrUnsupportedFlag)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.cur[name]
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case n == nil:
		if err := m.parentDirLocked("open", name); err != nil {
			return nil, err
		}
		n = &node{data: []byte{}, synced: []byte{}}
		m.cur[name] = n
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, pathErr("open", name, fs.ErrExist)
	case n.isDir && flag&(os.O_WRONLY|os.O_RDWR) != 0:
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	if flag&os.O_TRUNC != 0 && !n.isDir {
		n.data = n.data[:0:0]
	}
	return &file{fs: m, n: n, name: name, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

// Remove implements vfs.FS.
func (m *FS) Remove(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.cur[name]
	if n == nil || name == "/" {
		return pathErr("remove", name, fs.ErrNotExist)
	}
	if n.isDir {
		for other := range m.cur {
			if path.Dir(other) == name && other != name {
				return pathErr("remove", name, syscall.ENOTEMPTY)
			}
		}
	}
	delete(m.cur, name)
	return nil
}

// Rename implements vfs.FS. Renaming directories is not supported.
func (m *FS) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.cur[oldname]
	if n == nil {
		return pathErr("rename", oldname, fs.ErrNotExist)
	}
	if n.isDir {
		return pathErr("rename", oldname, syscall.EINVAL)
	}
	if err := m.parentDirLocked("rename", newname); err != nil {
		return err
	}
	if t := m.cur[newname]; t != nil && t.isDir {
		return pathErr("rename", newname, syscall.EISDIR)
	}
	delete(m.cur, oldname)
	m.cur[newname] = n
	return nil
}

// MkdirAll implements vfs.FS.
func (m *FS) MkdirAll(dir string, perm os.FileMode) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	var chain []string
	for d := dir; d != "/"; d = path.Dir(d) {
		chain = append(chain, d)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		d := chain[i]
		if n := m.cur[d]; n != nil {
			if !n.isDir {
				return pathErr("mkdir", d, syscall.ENOTDIR)
			}
			continue
		}
		m.cur[d] = &node{isDir: true}
	}
	return nil
}

// ReadDir implements vfs.FS.
func (m *FS) ReadDir(dir string) ([]string, error) {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.cur[dir]
	if d == nil {
		return nil, pathErr("readdir", dir, fs.ErrNotExist)
	}
	if !d.isDir {
		return nil, pathErr("readdir", dir, syscall.ENOTDIR)
	}
	var names []string
	for name := range m.cur {
		if name != "/" && path.Dir(name) == dir {
			names = append(names, path.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements vfs.FS: the current entries of dir become durable.
func (m *FS) SyncDir(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.cur[dir]
	if d == nil {
		return pathErr("syncdir", dir, fs.ErrNotExist)
	}
	if !d.isDir {
		return pathErr("syncdir", dir, syscall.ENOTDIR)
	}
	for name := range m.durable {
		if name != "/" && path.Dir(name) == dir {
			delete(m.durable, name)
		}
	}
	for name, n := range m.cur {
		if name != "/" && path.Dir(name) == dir {
			m.durable[name] = n
		}
	}
	return nil
}

// Stat implements vfs.FS.
func (m *FS) Stat(name string) (os.FileInfo, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.cur[name]
	if n == nil {
		return nil, pathErr("stat", name, fs.ErrNotExist)
	}
	return fileInfo{name: path.Base(name), size: int64(len(n.data)), dir: n.isDir}, nil
}

// FreeBytes implements vfs.FS: capacity minus the total size of all files,
// or Unlimited.
func (m *FS) FreeBytes(dir string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur[clean(dir)] == nil {
		return 0, pathErr("statfs", dir, fs.ErrNotExist)
	}
	if m.capacity == 0 {
		return Unlimited, nil
	}
	return uint64(max(0, m.capacity-m.usedLocked())), nil
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }
func (fi fileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}

// file is an open handle. It keeps working on its node after the name is
// removed or renamed, like a POSIX file descriptor.
type file struct {
	fs       *FS
	n        *node
	name     string
	writable bool
	closed   bool // guarded by fs.mu
}

func (f *file) checkLocked(op string, write bool) error {
	if f.closed {
		return pathErr(op, f.name, os.ErrClosed)
	}
	if f.n.isDir && op != "sync" {
		return pathErr(op, f.name, syscall.EISDIR)
	}
	if write && !f.writable {
		return pathErr(op, f.name, syscall.EBADF)
	}
	return nil
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	return f.WritevAt([][]byte{p}, off)
}

// WritevAt writes all of bufs or, on an error, nothing.
func (f *file) WritevAt(bufs [][]byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write", true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, pathErr("write", f.name, syscall.EINVAL)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	end := off + int64(total)
	if grow := end - int64(len(f.n.data)); grow > 0 && f.fs.capacity > 0 &&
		f.fs.usedLocked()+grow > f.fs.capacity {
		return 0, pathErr("write", f.name, syscall.ENOSPC)
	}
	if end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	at := off
	for _, b := range bufs {
		at += int64(copy(f.n.data[at:], b))
	}
	return total, nil
}

func (f *file) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("sync", false); err != nil {
		return err
	}
	f.n.synced = bytes.Clone(f.n.data)
	if f.n.synced == nil {
		f.n.synced = []byte{}
	}
	return nil
}

func (f *file) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	if grow := size - int64(len(f.n.data)); grow > 0 {
		if f.fs.capacity > 0 && f.fs.usedLocked()+grow > f.fs.capacity {
			return pathErr("truncate", f.name, syscall.ENOSPC)
		}
		f.n.data = append(f.n.data, make([]byte, grow)...)
		return nil
	}
	f.n.data = f.n.data[:size:size]
	return nil
}

func (f *file) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("stat", false); err != nil {
		return 0, err
	}
	return int64(len(f.n.data)), nil
}

func (f *file) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	return nil
}
