package fuse

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"syscall"
	"testing"
	"time"
	"unsafe"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// readFS answers READs with data, or, for offset 1, waits until the read
// is cancelled and says so.
type readFS struct {
	gofuse.RawFileSystem
	data    []byte
	waiting chan struct{}
}

func (r *readFS) Read(cancel <-chan struct{}, in *gofuse.ReadIn, _ []byte) (gofuse.ReadResult, gofuse.Status) {
	if in.Offset == 1 {
		close(r.waiting)
		select {
		case <-cancel:
			return nil, gofuse.EINTR
		case <-time.After(30 * time.Second):
			return nil, gofuse.EIO
		}
	}
	return gofuse.ReadResultData(r.data), gofuse.OK
}

// TestServeRead: the serve loop answers a READ itself, the header and the
// file system's bytes in one message, and an INTERRUPT of such a READ
// reaches its cancel channel.
func TestServeRead(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	conn, err := newDevConn(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.close()
	fs := &readFS{RawFileSystem: gofuse.NewDefaultRawFileSystem(), data: []byte("the file's bytes"), waiting: make(chan struct{})}
	s := newServer(conn, fs, nil, &gofuse.MountOptions{MaxWrite: 1 << 20}, slog.New(slog.DiscardHandler))

	request := func(op uint32, unique uint64, body []byte) []byte {
		b := make([]byte, inHeaderSize+len(body))
		binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
		binary.LittleEndian.PutUint32(b[4:], op)
		binary.LittleEndian.PutUint64(b[8:], unique)
		binary.LittleEndian.PutUint64(b[16:], 7) // node id
		copy(b[inHeaderSize:], body)
		return b
	}
	readReq := func(unique, off uint64) []byte {
		body := make([]byte, unsafe.Sizeof(gofuse.ReadIn{})-inHeaderSize)
		binary.LittleEndian.PutUint64(body[8:], off)   // Offset (after Fh)
		binary.LittleEndian.PutUint32(body[16:], 4096) // Size
		return request(codeRead, unique, body)
	}
	reply := func() (errno int32, unique uint64, data []byte) {
		t.Helper()
		b := make([]byte, 8192)
		var pfd = []unix.PollFd{{Fd: int32(fds[1]), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 30000); n != 1 || err != nil {
			t.Fatalf("no reply: %v", err)
		}
		n, err := unix.Read(fds[1], b)
		if err != nil || n < outHeaderSize || int(binary.LittleEndian.Uint32(b)) != n {
			t.Fatalf("reply of %d bytes (%v): %x", n, err, b[:max(n, 0)])
		}
		return int32(binary.LittleEndian.Uint32(b[4:])), binary.LittleEndian.Uint64(b[8:]), b[outHeaderSize:n]
	}

	s.handle(readReq(10|uniqueResend, 0))
	if errno, unique, data := reply(); errno != 0 || unique != 10|uniqueResend || !bytes.Equal(data, fs.data) {
		t.Fatalf("reply: errno %d, unique %x, data %q", errno, unique, data)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handle(readReq(12, 1))
	}()
	<-fs.waiting
	interrupt := make([]byte, 8)
	binary.LittleEndian.PutUint64(interrupt, 12)
	s.handle(request(codeInterrupt, 14, interrupt))
	<-done
	if errno, unique, data := reply(); errno != -int32(syscall.EINTR) || unique != 12 || len(data) != 0 {
		t.Fatalf("interrupted read: errno %d, unique %d, %d bytes", errno, unique, len(data))
	}
}
