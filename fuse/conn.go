package fuse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FUSE protocol numbers the serve loop needs (include/uapi/linux/fuse.h).
const (
	codeRead        = 15
	codeGetxattr    = 22
	codeListxattr   = 23
	codeInit        = 26
	codeReaddir     = 28
	codeInterrupt   = 36
	codeForget      = 2
	codeBatchForget = 42
	codeReaddirplus = 44

	inHeaderSize  = 40 // struct fuse_in_header
	outHeaderSize = 16 // struct fuse_out_header

	notifyInvalInode = 2 // FUSE_NOTIFY_INVAL_INODE
	notifyResend     = 7 // FUSE_NOTIFY_RESEND
)

// devConn is the /dev/fuse descriptor of one mount. The descriptor is
// non-blocking and readers wait in poll(2) on it and on an eventfd, so
// that stopReading wakes them without closing the connection.
//
// Not Go's netpoller: the process itself may open files on its own mount
// (tests, the mount service's mkdir and stat), and Go adds every opened
// file to its epoll set; for a FUSE file that epoll_ctl sends a POLL
// request to this very connection while holding the epoll lock the
// netpoller needs to wake the reader that would answer it: a deadlock.
//
// Safe for concurrent use; close must come after every read and write.
type devConn struct {
	fd      int
	stopFd  int // eventfd, readable once stopReading was called
	stopped atomic.Bool
}

// errReadStopped is what read returns after stopReading.
var errReadStopped = errors.New("fuse: reading stopped")

// newDevConn takes ownership of fd, an open /dev/fuse descriptor.
func newDevConn(fd int) (*devConn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fuse: make /dev/fuse descriptor non-blocking: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fuse: eventfd: %w", err)
	}
	return &devConn{fd: fd, stopFd: efd}, nil
}

// read reads one whole request into buf, waiting for one up to deadline
// (zero: no deadline). It returns errReadStopped once stopReading was
// called, os.ErrDeadlineExceeded at the deadline, and the raw errno
// otherwise (ENODEV: the file system was unmounted; ENOENT: the request
// was interrupted before it could be read, try again).
func (c *devConn) read(buf []byte, deadline time.Time) (int, error) {
	for {
		if c.stopped.Load() {
			return 0, errReadStopped
		}
		n, err := unix.Read(c.fd, buf)
		if !errors.Is(err, unix.EAGAIN) {
			return n, err
		}
		timeout := -1
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = int(left/time.Millisecond) + 1
		}
		p := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.stopFd), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
	}
}

// write writes one reply or notification with a single write(2).
func (c *devConn) write(b []byte) error {
	for {
		_, err := unix.Write(c.fd, b)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// writev writes one message from several buffers.
func (c *devConn) writev(bs ...[]byte) error {
	for {
		_, err := unix.Writev(c.fd, bs)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// InodeNotify asks the kernel to drop its cached attributes of node and,
// when off >= 0, its cached data from off on (length 0: to the end).
// ENOENT means the kernel did not have the node cached.
func (c *devConn) InodeNotify(node uint64, off, length int64) gofuse.Status {
	var b [outHeaderSize + 24]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[4:], notifyInvalInode) // error field carries the notify code
	binary.LittleEndian.PutUint64(b[8:], 0)                // unique 0: a notification
	binary.LittleEndian.PutUint64(b[16:], node)
	binary.LittleEndian.PutUint64(b[24:], uint64(off))
	binary.LittleEndian.PutUint64(b[32:], uint64(length))
	if err := c.write(b[:]); err != nil {
		var e syscall.Errno
		if errors.As(err, &e) {
			return gofuse.Status(e)
		}
		return gofuse.EIO
	}
	return gofuse.OK
}

// resend asks the kernel to send again every request a reader of the
// connection took and never answered (FUSE_NOTIFY_RESEND, Linux 6.9 and
// later): what a killed server had read. They come back with bit 63 of
// their unique id set, which the replies echo.
func (c *devConn) resend() error {
	var b [outHeaderSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[4:], notifyResend)
	if err := c.write(b[:]); err != nil {
		return fmt.Errorf("fuse: ask the kernel to resend the requests the killed process had read (needs Linux 6.9 or later): %w", err)
	}
	return nil
}

// replyError answers request unique with errno, and reports whether the
// kernel was waiting for that answer (false: no such request is being
// served, it was answered already).
func (c *devConn) replyError(unique uint64, errno unix.Errno) (bool, error) {
	var b [outHeaderSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[4:], uint32(-int32(errno)))
	binary.LittleEndian.PutUint64(b[8:], unique)
	switch err := c.write(b[:]); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, fmt.Errorf("fuse: answer request %d: %w", unique, err)
	}
}

// dup returns a duplicate of the descriptor (close-on-exec), sharing the
// connection: the kernel keeps a FUSE connection while any duplicate is
// open.
func (c *devConn) dup() (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fuse: duplicate /dev/fuse descriptor: %w", err)
	}
	return os.NewFile(uintptr(nfd), "/dev/fuse"), nil
}

// stopReading makes every current and later read return errReadStopped;
// replies can still be written.
func (c *devConn) stopReading() {
	c.stopped.Store(true)
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(c.stopFd, one[:])
}

// close drops this process's reference. The connection ends only if no
// other process holds a duplicate.
func (c *devConn) close() error {
	unix.Close(c.stopFd)
	return unix.Close(c.fd)
}

// mountDirect mounts a FUSE file system at dir with mount(2), on a
// /dev/fuse descriptor opened here, and returns the descriptor. Root
// only; the options are those fusermount3 would pass (see go-fuse's
// mountDirect).
func mountDirect(dir string, opts *gofuse.MountOptions, readOnly bool) (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		"rootmode=40000",
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", opts.MaxWrite),
	}
	if opts.AllowOther {
		data = append(data, "allow_other")
	}
	for _, o := range opts.Options {
		if o != "ro" {
			data = append(data, o)
		}
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(opts.FsName, dir, "fuse."+opts.Name, flags, strings.Join(data, ",")); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount(2) %s: %w", dir, err)
	}
	return fd, nil
}

// IsDevice reports whether descriptor fd is /dev/fuse (character device
// 10:229).
func IsDevice(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 10 && unix.Minor(st.Rdev) == 229
}
