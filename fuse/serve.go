package fuse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unsafe"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// maxIdleReaders is how many readers may wait for a request at once. A
// reader that takes the last request while no other reader waits starts
// another one first, so a slow request (a flush, a filer call) never
// holds up the next; readers beyond this many idle ones exit.
const maxIdleReaders = 4

// errStopped ends a serve loop stopped by stop (for a hand-over).
var errStopped = errors.New("fuse: serving stopped for a hand-over")

// server serves one FUSE connection with go-fuse's ProtocolServer: readers
// take whole requests from the device, the ProtocolServer decodes each,
// calls the file system and encodes the reply, and the reply goes back
// with one write. Unlike go-fuse's own Server it can start on a
// connection whose INIT another process answered (resume), and stop
// reading without closing the connection (stop), which is what hands a
// live mount from one process to the next.
type server struct {
	conn *devConn
	ps   *gofuse.ProtocolServer
	fs   gofuse.RawFileSystem
	// reads are the READs being served by serveRead, by request id (the
	// resend mark cleared), with what cancels each (an INTERRUPT).
	reads struct {
		sync.Mutex
		m map[uint64]chan struct{}
	}
	log     *slog.Logger
	bufSize int       // request buffer size: max_write plus room for headers
	ins     sync.Pool // request buffers of bufSize, kept across readers
	outs    sync.Pool // reply buffers of bufSize

	mu   sync.Mutex // guards idle
	idle int        // readers blocked in read

	// readMu lets one reader at a time take a request from the device,
	// so that order notes the WRITEs in the order the kernel queued
	// them. (It also keeps the kernel from waking every waiting reader
	// for each request.)
	readMu sync.Mutex
	order  *writeOrder
	// replied, if set, runs after each request's reply is written (or
	// the request was found to need none), with the request's id.
	replied func(unique uint64)
	// inflight, if set, records the requests read and not yet answered,
	// so that a process resuming the connection after a kill can answer
	// them where the kernel cannot send them again (Resume).
	inflight *pendingTable

	readers sync.WaitGroup // running readers, each with the request it serves
	done    chan struct{}  // closed when every reader has returned
	endOnce sync.Once
	endErr  error // why serving ended (nil: unmounted); written before done closes
}

func newServer(conn *devConn, fs gofuse.RawFileSystem, order *writeOrder, opts *gofuse.MountOptions, log *slog.Logger) *server {
	s := &server{
		conn:    conn,
		ps:      gofuse.NewProtocolServer(fs, opts),
		fs:      fs,
		order:   order,
		log:     log,
		bufSize: opts.MaxWrite + 64<<10,
		done:    make(chan struct{}),
	}
	s.reads.m = make(map[uint64]chan struct{})
	s.outs.New = func() any { b := make([]byte, s.bufSize); return &b }
	s.ins.New = s.outs.New
	return s
}

// handshake answers the kernel's INIT, the first request of a new
// connection, and returns a copy of the request: replaying it in another
// process (resume) restores the negotiated settings.
func (s *server) handshake() ([]byte, error) {
	buf := make([]byte, s.bufSize)
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.conn.read(buf, deadline)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fuse: reading INIT from the kernel: %w", err)
		}
		if n < inHeaderSize || binary.LittleEndian.Uint32(buf[4:]) != codeInit {
			return nil, fmt.Errorf("fuse: the kernel's first request is not INIT (%d bytes)", n)
		}
		init := append([]byte(nil), buf[:n]...)
		out := make([]byte, 4096)
		m, st := s.ps.HandleRequest([][]byte{init}, [][]byte{out})
		if !st.Ok() || m < outHeaderSize || replyErrno(out) != 0 {
			return nil, fmt.Errorf("fuse: INIT refused: status %v, errno %d", st, replyErrno(out))
		}
		if err := s.conn.write(out[:m]); err != nil {
			return nil, fmt.Errorf("fuse: answering INIT: %w", err)
		}
		return init, nil
	}
}

// resume restores the settings negotiated at INIT on a live connection
// by feeding the saved INIT request to the ProtocolServer; the reply is
// dropped (the kernel answered long ago).
func (s *server) resume(init []byte) error {
	if len(init) < inHeaderSize || binary.LittleEndian.Uint32(init[4:]) != codeInit {
		return errors.New("fuse: the saved INIT request is not an INIT request")
	}
	out := make([]byte, 4096)
	m, st := s.ps.HandleRequest([][]byte{init}, [][]byte{out})
	if !st.Ok() || m < outHeaderSize || replyErrno(out) != 0 {
		return fmt.Errorf("fuse: replaying the saved INIT failed: status %v, errno %d", st, replyErrno(out))
	}
	return nil
}

func replyErrno(out []byte) int32 { return int32(binary.LittleEndian.Uint32(out[4:])) }

// start starts the readers; done closes when they have all returned.
func (s *server) start() {
	s.readers.Add(1)
	go s.loop()
	go func() {
		s.readers.Wait()
		close(s.done)
	}()
}

// stop stops reading requests and waits until every request read so far
// has been answered. Requests the kernel queues meanwhile stay queued for
// whoever reads the connection next.
func (s *server) stop() {
	s.conn.stopReading()
	<-s.done
}

// err is why serving ended: nil when the file system was unmounted,
// errStopped after stop, else the read error. Valid once done is closed.
func (s *server) err() error { return s.endErr }

func (s *server) end(err error) { s.endOnce.Do(func() { s.endErr = err }) }

func (s *server) loop() {
	defer s.readers.Done()
	pooled := s.ins.Get().(*[]byte)
	defer s.ins.Put(pooled)
	buf := *pooled
	slot := s.inflight.claimInflight()
	defer s.inflight.releaseInflight(slot)
	for {
		s.mu.Lock()
		if s.idle >= maxIdleReaders {
			s.mu.Unlock()
			return
		}
		s.idle++
		s.mu.Unlock()
		s.readMu.Lock()
		n, err := s.conn.read(buf, time.Time{})
		var write uint64
		answer := err == nil && needsReply(buf[:n])
		if err == nil {
			if answer {
				s.inflight.setInflight(slot, binary.LittleEndian.Uint64(buf[8:]))
			}
			write = s.order.note(buf[:n])
		}
		s.readMu.Unlock()
		s.mu.Lock()
		s.idle--
		spawn := err == nil && s.idle == 0 && !isForget(buf[:n])
		if spawn {
			s.readers.Add(1)
		}
		s.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINTR):
			continue // interrupted before we read it
		case errors.Is(err, errReadStopped):
			s.end(errStopped)
			return
		case errors.Is(err, unix.ENODEV):
			s.end(nil) // unmounted
			return
		default:
			s.log.Error("reading from /dev/fuse failed; the mount stops being served", "err", err)
			s.end(fmt.Errorf("fuse: read /dev/fuse: %w", err))
			return
		}
		if spawn {
			go s.loop()
		}
		s.handle(buf[:n])
		if answer {
			s.inflight.setInflight(slot, 0)
		}
		s.order.served(write)
		if s.replied != nil && n >= inHeaderSize {
			s.replied(binary.LittleEndian.Uint64(buf[8:]))
		}
	}
}

// uniqueResend marks the unique id of a request the kernel sends again
// (FUSE_UNIQUE_RESEND; see devConn.resend); the reply echoes it.
const uniqueResend = 1 << 63

// resent reports whether the request with this unique id is one the
// kernel sent again after the process that first read it was killed.
func resent(unique uint64) bool { return unique&uniqueResend != 0 }

// needsReply reports whether request req is one the kernel waits for a
// reply to (all but FORGET, BATCH_FORGET and INTERRUPT).
func needsReply(req []byte) bool {
	if len(req) < inHeaderSize {
		return false
	}
	op := binary.LittleEndian.Uint32(req[4:])
	return op != codeForget && op != codeBatchForget && op != codeInterrupt
}

func isForget(req []byte) bool {
	if len(req) < inHeaderSize {
		return false
	}
	op := binary.LittleEndian.Uint32(req[4:])
	return op == codeForget || op == codeBatchForget
}

// handle serves one request and writes its reply, if it has one.
func (s *server) handle(req []byte) {
	if len(req) < inHeaderSize {
		s.log.Error("short request from the kernel; ignored", "bytes", len(req))
		return
	}
	op := binary.LittleEndian.Uint32(req[4:])
	if resent(binary.LittleEndian.Uint64(req[8:])) {
		mountResent.Inc()
		s.log.Info("serving again a request the previous process had read and not answered (it was killed)", "opcode", op)
	}
	switch op {
	case codeRead:
		if s.serveRead(req) {
			return
		}
	case codeInterrupt:
		if s.interruptRead(req) {
			return
		}
	}
	pooled := s.outs.Get().(*[]byte)
	defer s.outs.Put(pooled)
	out := *pooled
	if need := replyBytes(req); need > len(out) {
		out = make([]byte, need)
	}
	n, st := s.ps.HandleRequest([][]byte{req}, [][]byte{out})
	if !st.Ok() && n == 0 && needsReply(req) {
		// Never leave a request unanswered: the caller would hang.
		s.log.Error("could not serve a request; answering EIO", "opcode", op, "status", st)
		n = outHeaderSize
		binary.LittleEndian.PutUint32(out[0:], outHeaderSize)
		eio := -int32(unix.EIO)
		binary.LittleEndian.PutUint32(out[4:], uint32(eio))
		copy(out[8:16], req[8:16])
	}
	if n == 0 {
		return // FORGET, BATCH_FORGET, a handled INTERRUPT: no reply
	}
	s.reply(op, out[:n])
}

// reply writes a reply to request op, from one buffer or several.
func (s *server) reply(op uint32, bufs ...[]byte) {
	if err := s.conn.writev(bufs...); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		// ENOENT: the request was interrupted and the kernel gave up on
		// it; ENODEV: unmounted meanwhile.
		s.log.Error("writing a reply to /dev/fuse failed", "opcode", op, "err", err)
	}
}

// serveRead serves a READ itself, so that the reply goes to the kernel
// straight from the bytes the file system returns (one writev of the
// header and the data), where the ProtocolServer copies them into a reply
// buffer first: that copy was 14% of the mount's CPU time in a cold
// sequential read. The file system's Read gets no buffer (the mount's
// returns data it holds). It reports false, doing nothing, for a request
// too short to be a READ.
func (s *server) serveRead(req []byte) bool {
	if len(req) < int(unsafe.Sizeof(gofuse.ReadIn{})) {
		return false
	}
	in := (*gofuse.ReadIn)(unsafe.Pointer(&req[0]))
	unique := in.Unique
	cancel := make(chan struct{})
	s.reads.Lock()
	s.reads.m[order(unique)] = cancel
	s.reads.Unlock()
	res, st := s.fs.Read(cancel, in, nil)
	s.reads.Lock()
	delete(s.reads.m, order(unique))
	s.reads.Unlock()
	var data []byte
	if st.Ok() && res != nil {
		data, st = res.Bytes(nil)
		defer res.Done()
	}
	if !st.Ok() {
		data = nil
	} else if len(data) > int(in.Size) {
		data = data[:in.Size]
	}
	var hdr [outHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(outHeaderSize+len(data)))
	if !st.Ok() {
		binary.LittleEndian.PutUint32(hdr[4:], uint32(-int32(st)))
	}
	binary.LittleEndian.PutUint64(hdr[8:], unique)
	s.reply(codeRead, hdr[:], data)
	return true
}

// interruptRead cancels the READ an INTERRUPT names if serveRead serves
// it, and reports whether it did; other requests' interrupts go to the
// ProtocolServer. (An INTERRUPT that comes before its READ is registered
// is answered EAGAIN by the ProtocolServer, and the kernel sends it
// again.)
func (s *server) interruptRead(req []byte) bool {
	if len(req) < inHeaderSize+8 {
		return false
	}
	target := order(binary.LittleEndian.Uint64(req[inHeaderSize:]))
	s.reads.Lock()
	cancel, ok := s.reads.m[target]
	if ok {
		delete(s.reads.m, target)
	}
	s.reads.Unlock()
	if ok {
		close(cancel)
	}
	return ok
}

// replyBytes is the largest reply a request can have, for the requests
// whose reply size the kernel chooses (data, listings, xattrs); 0 for
// the others (they fit any reply buffer).
func replyBytes(req []byte) int {
	op := binary.LittleEndian.Uint32(req[4:])
	switch op {
	case codeRead, codeReaddir, codeReaddirplus:
		if len(req) >= inHeaderSize+20 {
			return outHeaderSize + int(binary.LittleEndian.Uint32(req[inHeaderSize+16:])) + 4096
		}
	case codeGetxattr, codeListxattr:
		if len(req) >= inHeaderSize+4 {
			return outHeaderSize + int(binary.LittleEndian.Uint32(req[inHeaderSize:])) + 4096
		}
	}
	return 0
}
