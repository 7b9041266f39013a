package mountsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/fuse"
	"github.com/cairn-storage/cairn/internal/mountinfo"
)

// DefaultHolderSocket is where `cairn fuse-holder` listens by default.
const DefaultHolderSocket = "/run/cairn/fuse-holder.sock"

// HeldMount is the record the holder keeps with each /dev/fuse
// descriptor: what a new mount service needs to serve the connection
// again (fuse.Resume).
type HeldMount struct {
	Mount
	// Init is the INIT request the kernel sent when the volume was
	// mounted (base64 in JSON).
	Init []byte `json:"init"`
	// Clean is true when the last process serving the connection handed
	// it over cleanly (fuse.Mounted.Detach succeeded: every request it
	// had read was answered, every file flushed). A connection that is
	// not clean (the service was killed) is resumed as after a kill
	// (fuse.Resume with killed set).
	Clean bool `json:"clean,omitempty"`
}

// HeldConn is a held mount as handed back by the holder, with a
// duplicate of its descriptor (the receiver closes it).
type HeldConn struct {
	HeldMount
	Dev *os.File
}

// The holder protocol: one JSON message per SOCK_SEQPACKET packet, the
// descriptor (if any) in SCM_RIGHTS of the same packet. Requests:
//
//	{"op":"hold","mount":{...}} + 1 descriptor  -> {"ok":true}
//	{"op":"drop","dir":"/staging/x"}            -> {"ok":true,"was":bool}
//	{"op":"mark","dir":"/staging/x","clean":b}  -> {"ok":true,"was":bool}
//	{"op":"list"}                               -> {"mount":{...}} + 1 descriptor per mount, then {"ok":true,"end":true}
//
// A failed request gets {"error":"..."} and changes nothing.
type holderRequest struct {
	Op    string     `json:"op"`
	Mount *HeldMount `json:"mount,omitempty"`
	Dir   string     `json:"dir,omitempty"`
	Clean bool       `json:"clean,omitempty"`
}

type holderReply struct {
	OK    bool       `json:"ok,omitempty"`
	Error string     `json:"error,omitempty"`
	Was   bool       `json:"was,omitempty"`
	Mount *HeldMount `json:"mount,omitempty"`
	End   bool       `json:"end,omitempty"`
}

const holderMaxPacket = 64 << 10

// Holder keeps the /dev/fuse descriptors of the mount service's mounts
// across restarts of the service: as long as it holds a duplicate, the
// kernel keeps each FUSE connection (requests wait in its queue instead
// of failing). It never reads from them. It drops a descriptor when told
// to, when the connection ends (poll reports POLLERR: unmounted or
// aborted) and when the mount point it was seen mounted at is no longer
// mounted. Safe for concurrent use.
type Holder struct {
	log *slog.Logger

	mu   sync.Mutex       // guards held
	held map[string]*held // by mount point
}

type held struct {
	rec  HeldMount
	fd   int
	seen bool // the mount point was seen in /proc/self/mountinfo
}

// NewHolder returns an empty holder.
func NewHolder(log *slog.Logger) *Holder {
	if log == nil {
		log = slog.Default()
	}
	return &Holder{log: log.With("component", "fuse-holder"), held: map[string]*held{}}
}

// RunHolder serves a holder on socket until ctx ends, then closes every
// descriptor it holds: that aborts those FUSE connections (applications
// see ENOTCONN), so the holder is stopped only on a drained node.
func RunHolder(ctx context.Context, socket string, log *slog.Logger) error {
	if socket == "" {
		return errors.New("mountsvc: no holder socket given; pass --socket " + DefaultHolderSocket)
	}
	h := NewHolder(log)
	ln, err := listenPacket(socket)
	if err != nil {
		return err
	}
	defer os.Remove(socket)
	h.log.Info("fuse holder ready; it keeps the /dev/fuse connections of the mount service across its restarts", "socket", socket)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.serve(ln) }()
	go func() { defer wg.Done(); h.watch(ctx) }()
	<-ctx.Done()
	ln.Close()
	wg.Wait()
	h.closeAll()
	return nil
}

// listenPacket listens on a SOCK_SEQPACKET unix socket at path, removing
// a stale socket; a socket a live process answers on is an error.
func listenPacket(path string) (*net.UnixListener, error) {
	if err := clearSocket("unixpacket", path, "another fuse holder is serving on %s; it holds live mounts, leave it running"); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("mountsvc: listen on %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return ln, nil
}

func (h *Holder) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				h.log.Error("accepting a connection failed; the holder stops answering", "err", err)
			}
			return
		}
		go h.serveConn(c)
	}
}

func (h *Holder) serveConn(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, holderMaxPacket)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		fds := parseRights(oob[:oobn])
		var req holderRequest
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			closeFds(fds)
			h.reply(c, holderReply{Error: "bad request: " + err.Error()}, -1)
			continue
		}
		switch req.Op {
		case "hold":
			if err := h.hold(req.Mount, fds); err != nil {
				closeFds(fds)
				h.reply(c, holderReply{Error: err.Error()}, -1)
				continue
			}
			h.reply(c, holderReply{OK: true}, -1)
		case "drop":
			closeFds(fds)
			h.reply(c, holderReply{OK: true, Was: h.drop(req.Dir, "the mount service unmounted it")}, -1)
		case "mark":
			closeFds(fds)
			h.reply(c, holderReply{OK: true, Was: h.mark(req.Dir, req.Clean)}, -1)
		case "list":
			closeFds(fds)
			h.list(c)
		default:
			closeFds(fds)
			h.reply(c, holderReply{Error: fmt.Sprintf("unknown op %q (want hold, drop or list)", req.Op)}, -1)
		}
	}
}

func (h *Holder) reply(c *net.UnixConn, r holderReply, fd int) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

func (h *Holder) hold(rec *HeldMount, fds []int) error {
	switch {
	case rec == nil:
		return errors.New("hold: no mount record")
	case len(fds) != 1:
		return fmt.Errorf("hold: want exactly one descriptor, got %d", len(fds))
	case !filepath.IsAbs(rec.Dir) || rec.VolumeID == "":
		return fmt.Errorf("hold: the record needs a volume id and an absolute dir (got %q at %q)", rec.VolumeID, rec.Dir)
	case len(rec.Init) == 0:
		return errors.New("hold: the record has no INIT request")
	case !fuse.IsDevice(fds[0]):
		return errors.New("hold: the descriptor is not /dev/fuse")
	}
	dir := filepath.Clean(rec.Dir)
	h.mu.Lock()
	old := h.held[dir]
	h.held[dir] = &held{rec: *rec, fd: fds[0]}
	n := len(h.held)
	h.mu.Unlock()
	if old != nil {
		unix.Close(old.fd)
	}
	h.log.Info("holding the FUSE connection of a mount", "volume", rec.VolumeID, "dir", dir, "held", n)
	return nil
}

// drop closes the descriptor held for dir; it reports whether there was one.
func (h *Holder) drop(dir, why string) bool {
	dir = filepath.Clean(dir)
	h.mu.Lock()
	e := h.held[dir]
	delete(h.held, dir)
	n := len(h.held)
	h.mu.Unlock()
	if e == nil {
		return false
	}
	unix.Close(e.fd)
	h.log.Info("dropped the FUSE connection of a mount", "volume", e.rec.VolumeID, "dir", dir, "why", why, "held", n)
	return true
}

// mark records whether the connection at dir was handed over cleanly.
func (h *Holder) mark(dir string, clean bool) bool {
	h.mu.Lock()
	e := h.held[filepath.Clean(dir)]
	if e != nil {
		e.rec.Clean = clean
	}
	h.mu.Unlock()
	if e != nil && clean {
		h.log.Info("the mount service handed a mount over cleanly; the next start resumes it", "volume", e.rec.VolumeID, "dir", e.rec.Dir)
	}
	return e != nil
}

func (h *Holder) list(c *net.UnixConn) {
	h.mu.Lock()
	es := make([]*held, 0, len(h.held))
	for _, e := range h.held {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].rec.Dir < es[j].rec.Dir })
	// Send while holding the lock, so that no descriptor is closed
	// (drop, watch) while it is being sent.
	defer h.mu.Unlock()
	for _, e := range es {
		rec := e.rec
		if err := h.reply(c, holderReply{Mount: &rec}, e.fd); err != nil {
			h.log.Warn("handing a FUSE connection out failed", "dir", rec.Dir, "err", err)
			return
		}
	}
	_ = h.reply(c, holderReply{OK: true, End: true}, -1)
	h.log.Info("handed out the held FUSE connections", "count", len(es))
}

// watch drops, once a second, the connections that ended and the mounts
// that are no longer mounted.
func (h *Holder) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.check()
	}
}

func (h *Holder) check() {
	mounted, mierr := mountPoints()
	h.mu.Lock()
	var gone []string
	var why []string
	for dir, e := range h.held {
		p := []unix.PollFd{{Fd: int32(e.fd)}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 && p[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
			gone = append(gone, dir)
			why = append(why, "the connection ended (unmounted or aborted)")
			continue
		}
		if mierr != nil {
			continue
		}
		switch {
		case mounted[dir]:
			e.seen = true
		case e.seen:
			// Only once seen: the holder may run in a mount namespace
			// that does not show the mount at all.
			gone = append(gone, dir)
			why = append(why, "the mount point is no longer mounted")
		}
	}
	h.mu.Unlock()
	for i, dir := range gone {
		h.drop(dir, why[i])
	}
}

// Held returns the records held, sorted by mount point.
func (h *Holder) Held() []HeldMount {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HeldMount, 0, len(h.held))
	for _, e := range h.held {
		out = append(out, e.rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

func (h *Holder) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for dir, e := range h.held {
		unix.Close(e.fd)
		h.log.Warn("holder stopping: closing a held FUSE connection; if no mount service serves it, its applications see ENOTCONN", "volume", e.rec.VolumeID, "dir", dir)
	}
	h.held = map[string]*held{}
}

// mountPoints returns the mount points in /proc/self/mountinfo.
func mountPoints() (map[string]bool, error) {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ms))
	for _, m := range ms {
		out[m.Point] = true
	}
	return out, nil
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if r, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// HolderClient talks to a fuse holder. Safe for concurrent use (one
// connection per call).
type HolderClient struct {
	socket string
}

// NewHolderClient returns a client of the holder listening on socket.
func NewHolderClient(socket string) *HolderClient { return &HolderClient{socket: socket} }

func (c *HolderClient) dial(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", c.socket)
	if err != nil {
		return nil, fmt.Errorf("mountsvc: cannot reach the fuse holder at %s (is `cairn fuse-holder` running?): %w", c.socket, err)
	}
	uc := conn.(*net.UnixConn)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = uc.SetDeadline(deadline)
	return uc, nil
}

func (c *HolderClient) call(ctx context.Context, req holderRequest, fd int) (holderReply, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return holderReply{}, err
	}
	defer conn.Close()
	b, err := json.Marshal(req)
	if err != nil {
		return holderReply{}, err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if _, _, err := conn.WriteMsgUnix(b, oob, nil); err != nil {
		return holderReply{}, fmt.Errorf("mountsvc: fuse holder at %s: %w", c.socket, err)
	}
	buf := make([]byte, holderMaxPacket)
	n, err := conn.Read(buf)
	if err != nil {
		return holderReply{}, fmt.Errorf("mountsvc: fuse holder at %s: %w", c.socket, err)
	}
	var r holderReply
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return r, fmt.Errorf("mountsvc: fuse holder at %s answered garbage: %w", c.socket, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("mountsvc: fuse holder at %s: %s", c.socket, r.Error)
	}
	return r, nil
}

// Hold hands a duplicate of dev (a /dev/fuse descriptor) and its record
// to the holder, replacing what it held for the same mount point.
func (c *HolderClient) Hold(ctx context.Context, rec HeldMount, dev *os.File) error {
	rc, err := dev.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		_, cerr = c.call(ctx, holderRequest{Op: "hold", Mount: &rec}, int(fd))
	}); err != nil {
		return err
	}
	return cerr
}

// Drop tells the holder the mount at dir is gone; it reports whether the
// holder held it.
func (c *HolderClient) Drop(ctx context.Context, dir string) (bool, error) {
	r, err := c.call(ctx, holderRequest{Op: "drop", Dir: dir}, -1)
	return r.Was, err
}

// Mark records whether the mount at dir was handed over cleanly (see
// HeldMount.Clean); it reports whether the holder holds it.
func (c *HolderClient) Mark(ctx context.Context, dir string, clean bool) (bool, error) {
	r, err := c.call(ctx, holderRequest{Op: "mark", Dir: dir, Clean: clean}, -1)
	return r.Was, err
}

// List returns every held mount with a duplicate of its descriptor.
func (c *HolderClient) List(ctx context.Context) ([]HeldConn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	b, _ := json.Marshal(holderRequest{Op: "list"})
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("mountsvc: fuse holder at %s: %w", c.socket, err)
	}
	var out []HeldConn
	fail := func(err error) ([]HeldConn, error) {
		for _, hc := range out {
			hc.Dev.Close()
		}
		return nil, err
	}
	buf := make([]byte, holderMaxPacket)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return fail(fmt.Errorf("mountsvc: fuse holder at %s: %w", c.socket, err))
		}
		fds := parseRights(oob[:oobn])
		var r holderReply
		if err := json.Unmarshal(buf[:n], &r); err != nil || r.Error != "" || (r.Mount == nil && !r.End) || (r.Mount != nil && len(fds) != 1) {
			closeFds(fds)
			return fail(fmt.Errorf("mountsvc: fuse holder at %s answered the list badly: %s %v", c.socket, buf[:n], err))
		}
		if r.End {
			closeFds(fds)
			return out, nil
		}
		out = append(out, HeldConn{HeldMount: *r.Mount, Dev: os.NewFile(uintptr(fds[0]), "/dev/fuse")})
	}
}
