// Package errorfs wraps a vfs.FS and injects errors: an Injector decides,
// per operation, whether it fails, and how.
package errorfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// OpKind is the kind of a filesystem operation.
type OpKind int

// Operation kinds.
const (
	OpRead OpKind = iota
	OpWrite
	OpSync
	OpTruncate
	OpOpen
	OpRename
	OpRemove
	OpSyncDir
	OpMkdir
	OpReadDir
	OpStat
)

var kindNames = [...]string{"read", "write", "sync", "truncate", "open", "rename", "remove", "syncdir", "mkdir", "readdir", "stat"}

func (k OpKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// Op describes one operation about to be performed.
type Op struct {
	Kind   OpKind
	Path   string // for rename, the old name
	Offset int64  // read and write only
	Len    int    // read and write only
}

// Injector decides whether an operation fails. MaybeError is called before
// the operation, possibly from many goroutines at once; returning nil lets
// it proceed. Returning a ShortWrite error from a write makes the write
// store only a prefix and then fail with io.ErrShortWrite.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(op Op) error

// MaybeError implements Injector.
func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// Common injected errors.
var (
	// ErrIO is an injected EIO.
	ErrIO error = syscall.EIO
	// ErrNoSpace is an injected ENOSPC.
	ErrNoSpace error = syscall.ENOSPC
)

// ShortWriteError, returned by an Injector for a write, makes the write store
// only its first Keep bytes and return io.ErrShortWrite.
type ShortWriteError struct{ Keep int }

func (e *ShortWriteError) Error() string {
	return fmt.Sprintf("errorfs: short write of %d bytes", e.Keep)
}

// ShortWrite returns a ShortWriteError keeping keep bytes.
func ShortWrite(keep int) error { return &ShortWriteError{Keep: keep} }

// FS wraps an FS and consults Injector before every operation.
type FS struct {
	inner vfs.FS
	inj   Injector
}

var _ vfs.FS = (*FS)(nil)

// Wrap returns inner with errors injected by inj.
func Wrap(inner vfs.FS, inj Injector) *FS { return &FS{inner: inner, inj: inj} }

func (e *FS) check(op Op) error {
	err := e.inj.MaybeError(op)
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op.Kind.String(), Path: op.Path, Err: fmt.Errorf("errorfs: injected: %w", err)}
}

// OpenFile implements vfs.FS.
func (e *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if err := e.check(Op{Kind: OpOpen, Path: name}); err != nil {
		return nil, err
	}
	f, err := e.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &file{fs: e, f: f, name: name}, nil
}

// Remove implements vfs.FS.
func (e *FS) Remove(name string) error {
	if err := e.check(Op{Kind: OpRemove, Path: name}); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

// Rename implements vfs.FS.
func (e *FS) Rename(oldname, newname string) error {
	if err := e.check(Op{Kind: OpRename, Path: oldname}); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

// MkdirAll implements vfs.FS.
func (e *FS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.check(Op{Kind: OpMkdir, Path: dir}); err != nil {
		return err
	}
	return e.inner.MkdirAll(dir, perm)
}

// ReadDir implements vfs.FS.
func (e *FS) ReadDir(dir string) ([]string, error) {
	if err := e.check(Op{Kind: OpReadDir, Path: dir}); err != nil {
		return nil, err
	}
	return e.inner.ReadDir(dir)
}

// SyncDir implements vfs.FS.
func (e *FS) SyncDir(dir string) error {
	if err := e.check(Op{Kind: OpSyncDir, Path: dir}); err != nil {
		return err
	}
	return e.inner.SyncDir(dir)
}

// Stat implements vfs.FS.
func (e *FS) Stat(name string) (os.FileInfo, error) {
	if err := e.check(Op{Kind: OpStat, Path: name}); err != nil {
		return nil, err
	}
	return e.inner.Stat(name)
}

// FreeBytes implements vfs.FS (never injected).
func (e *FS) FreeBytes(dir string) (uint64, error) { return e.inner.FreeBytes(dir) }

type file struct {
	fs   *FS
	f    vfs.File
	name string
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(Op{Kind: OpRead, Path: f.name, Offset: off, Len: len(p)}); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	return f.WritevAt([][]byte{p}, off)
}

// WritevAt is one write operation of the buffers' total length; a short
// write keeps a prefix of their concatenation.
func (f *file) WritevAt(bufs [][]byte, off int64) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	err := f.fs.inj.MaybeError(Op{Kind: OpWrite, Path: f.name, Offset: off, Len: total})
	if err == nil {
		return f.f.WritevAt(bufs, off)
	}
	var sw *ShortWriteError
	if !errors.As(err, &sw) {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: fmt.Errorf("errorfs: injected: %w", err)}
	}
	keep := min(max(sw.Keep, 0), total)
	if keep == total && keep > 0 {
		keep--
	}
	var prefix [][]byte
	for rest := keep; rest > 0; bufs = bufs[1:] {
		b := bufs[0][:min(rest, len(bufs[0]))]
		prefix = append(prefix, b)
		rest -= len(b)
	}
	n, werr := f.f.WritevAt(prefix, off)
	if werr != nil {
		return n, werr
	}
	return n, io.ErrShortWrite
}

func (f *file) Sync() error {
	if err := f.fs.check(Op{Kind: OpSync, Path: f.name}); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *file) Truncate(size int64) error {
	if err := f.fs.check(Op{Kind: OpTruncate, Path: f.name, Offset: size}); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

func (f *file) Size() (int64, error) { return f.f.Size() }
func (f *file) Close() error         { return f.f.Close() }

// Nth fails the n-th operation (1-based) of the given kind with err, once.
// It is safe for concurrent use.
type Nth struct {
	kind  OpKind
	n     int64
	err   error
	count atomic.Int64
}

// FailNth returns an injector failing the n-th operation of kind with err.
func FailNth(kind OpKind, n int, err error) *Nth { return &Nth{kind: kind, n: int64(n), err: err} }

// MaybeError implements Injector.
func (i *Nth) MaybeError(op Op) error {
	if op.Kind == i.kind && i.count.Add(1) == i.n {
		return i.err
	}
	return nil
}

// Switch fails every operation of the given kinds on paths containing a
// substring, with an error, while armed. It starts disarmed; Arm and Disarm
// may be called at any time from any goroutine.
type Switch struct {
	kinds  []OpKind
	substr string
	mu     sync.Mutex // guards err and hits
	err    error      // nil: disarmed
	hits   int
}

// NewSwitch returns a disarmed Switch for kinds on paths containing substr
// ("" matches every path).
func NewSwitch(substr string, kinds ...OpKind) *Switch {
	return &Switch{kinds: kinds, substr: substr}
}

// Arm makes matching operations fail with err from now on.
func (s *Switch) Arm(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// Disarm lets every operation through again.
func (s *Switch) Disarm() { s.Arm(nil) }

// Hits returns how many operations were failed so far.
func (s *Switch) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// MaybeError implements Injector.
func (s *Switch) MaybeError(op Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil || !strings.Contains(op.Path, s.substr) {
		return nil
	}
	for _, k := range s.kinds {
		if k == op.Kind {
			s.hits++
			return s.err
		}
	}
	return nil
}

// Any combines injectors: the first non-nil error wins.
type Any []Injector

// MaybeError implements Injector.
func (a Any) MaybeError(op Op) error {
	for _, i := range a {
		if err := i.MaybeError(op); err != nil {
			return err
		}
	}
	return nil
}
