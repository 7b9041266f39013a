// Package vfs is the narrow filesystem interface through which the needle
// store does all of its disk IO, so tests can substitute a crash-simulating
// (memfs) or error-injecting (errorfs) implementation.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
)

// File is an open file. ReadAt and WriteAt may be called concurrently; the
// other methods may be called concurrently with them.
type File interface {
	io.ReaderAt
	io.WriterAt
	// WritevAt writes the concatenation of bufs at off, like WriteAt with
	// one buffer (pwritev: the buffers need not be copied into one). It
	// returns the bytes written; fewer than the total comes with an error.
	WritevAt(bufs [][]byte, off int64) (int, error)
	// Sync makes the file's data and size durable (fdatasync). After a
	// failed Sync the durability of earlier writes is unknown; callers
	// must not retry it into success.
	Sync() error
	// Truncate changes the file's size. It is durable only after Sync.
	Truncate(size int64) error
	// Size returns the current size of the file.
	Size() (int64, error)
	Close() error
}

// FS is a filesystem. Creating, renaming and removing a file is durable only
// once the parent directory has been synced with SyncDir. All methods are
// safe for concurrent use.
type FS interface {
	// OpenFile opens name with os.O_* flags. O_APPEND is not supported.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names of the entries of dir, sorted.
	ReadDir(dir string) ([]string, error)
	// SyncDir makes the entries of dir durable (fsync of the directory).
	SyncDir(dir string) error
	Stat(name string) (os.FileInfo, error)
	// FreeBytes returns the space available to unprivileged users on the
	// filesystem holding dir.
	FreeBytes(dir string) (uint64, error)
}

// OS is the real filesystem of the operating system. Errors wrap the
// underlying errno, so errors.Is(err, syscall.ENOSPC) works.
var OS FS = osFS{}

// ErrUnsupportedFlag is returned by OpenFile for flags the package does not
// support (O_APPEND).
var ErrUnsupportedFlag = errors.New("vfs: unsupported open flag")

type osFS struct{}

type osFile struct{ f *os.File }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_APPEND != 0 {
		return nil, fmt.Errorf("vfs: open %s: %w", name, ErrUnsupportedFlag)
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("vfs: fsync directory %s: %w", dir, err)
	}
	return d.Close()
}

func (osFS) FreeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (f osFile) ReadAt(p []byte, off int64) (int, error)  { return f.f.ReadAt(p, off) }
func (f osFile) WriteAt(p []byte, off int64) (int, error) { return f.f.WriteAt(p, off) }
func (f osFile) Truncate(size int64) error                { return f.f.Truncate(size) }
func (f osFile) Close() error                             { return f.f.Close() }

func (f osFile) Sync() error {
	if err := Fdatasync(int(f.f.Fd())); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.f.Name(), Err: err}
	}
	return nil
}

// DropCache asks the kernel to drop the cached pages of bytes [off, off+n)
// of f (posix_fadvise DONTNEED). Pages not yet written back are left
// alone, so nothing is lost; it only frees memory. A file of another FS
// (the test file systems) ignores it, as does a kernel that refuses.
func DropCache(f File, off, n int64) {
	if d, ok := f.(interface{ dropCache(off, n int64) }); ok && n > 0 {
		d.dropCache(off, n)
	}
}

func (f osFile) dropCache(off, n int64) {
	_ = unix.Fadvise(int(f.f.Fd()), off, n, unix.FADV_DONTNEED)
}

// Fdatasync is fdatasync(2) of descriptor fd, tried again when a signal
// interrupts it.
func Fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}

func (f osFile) Size() (int64, error) {
	fi, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// iovMax is the most buffers one pwritev takes (IOV_MAX on Linux).
const iovMax = 1024

func (f osFile) WritevAt(bufs [][]byte, off int64) (int, error) {
	rc, err := f.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	bufs = slices.Clone(bufs) // advanced below after a partial write
	total := 0
	for len(bufs) > 0 {
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
			continue
		}
		var n int
		var werr error
		if cerr := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Pwritev(int(fd), bufs[:min(len(bufs), iovMax)], off)
			return true
		}); cerr != nil {
			return total, &os.PathError{Op: "pwritev", Path: f.f.Name(), Err: cerr}
		}
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			return total, &os.PathError{Op: "pwritev", Path: f.f.Name(), Err: werr}
		}
		if n == 0 {
			return total, &os.PathError{Op: "pwritev", Path: f.f.Name(), Err: io.ErrShortWrite}
		}
		total += n
		off += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return total, nil
}
