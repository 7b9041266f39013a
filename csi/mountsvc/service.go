package mountsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/fuse"
	"github.com/cairn-storage/cairn/internal/security"
)

// Config configures a mount service.
type Config struct {
	// Socket is the unix socket the service listens on.
	Socket string
	// Filers are the filer HTTP addresses the mounts use.
	Filers []string
	// StateFile records the hosted mounts so that a restarted service
	// mounts them again ("" disables this).
	StateFile string
	// UnmountOnExit unmounts every mount (after flushing) when the service
	// stops, and forgets them. By default the service only flushes: the
	// mounts stay recorded and are mounted again by the next start.
	UnmountOnExit bool
	// Holder is the socket of the fuse holder (`cairn fuse-holder`) that
	// keeps the mounts' /dev/fuse connections across restarts of the
	// service ("": no hand-over; a restart remounts from the state file).
	Holder   string
	Logger   *slog.Logger
	Security *security.Config

	// Mounter mounts a file system (nil: fuse.Mount), Resumer serves one
	// handed over by the holder (nil: fuse.Resume) and Unmounter unmounts
	// one (nil: umount, lazily if busy). For tests.
	Mounter   func(ctx context.Context, cfg fuse.Config) (Mounted, error)
	Resumer   func(ctx context.Context, cfg fuse.Config, dev *os.File, init []byte, killed bool) (Mounted, error)
	Unmounter func(dir string) error
}

// Mounted is a hosted FUSE file system (*fuse.Mounted).
type Mounted interface {
	// Wait blocks until the file system is unmounted.
	Wait() error
	// FlushAll makes every buffered write durable.
	FlushAll(ctx context.Context) error
}

// handedOver is a Mounted whose connection can be handed to the next
// process (*fuse.Mounted mounted as root).
type handedOver interface {
	// Handover returns a duplicate of the /dev/fuse descriptor and the
	// INIT request of the connection.
	Handover() (*os.File, []byte, error)
	// Detach stops serving, flushes, and leaves the connection to
	// whoever holds a duplicate; Wait then returns fuse.ErrDetached.
	Detach(ctx context.Context) error
}

// Service hosts FUSE mounts. Mount and Unmount run one at a time (opMu);
// List may run concurrently with them.
type Service struct {
	cfg    Config
	log    *slog.Logger
	state  stateFile
	holder *HolderClient // nil without Config.Holder

	opMu sync.Mutex // serializes Mount, Unmount and restore; taken before mu

	mu     sync.Mutex        // guards mounts
	mounts map[string]*entry // by mount point
}

type entry struct {
	m    Mount
	mnt  Mounted
	done chan struct{} // closed when the file system is unmounted
}

func (e *entry) alive() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// New returns a service for cfg; Run uses it.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Mounter == nil {
		cfg.Mounter = func(ctx context.Context, c fuse.Config) (Mounted, error) {
			m, err := fuse.Mount(ctx, c)
			if err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	if cfg.Resumer == nil {
		cfg.Resumer = func(ctx context.Context, c fuse.Config, dev *os.File, init []byte, killed bool) (Mounted, error) {
			m, err := fuse.Resume(ctx, c, dev, init, killed)
			if err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	if cfg.Unmounter == nil {
		cfg.Unmounter = unmount
	}
	s := &Service{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "mount-service"),
		state:  stateFile{path: cfg.StateFile},
		mounts: map[string]*entry{},
	}
	if cfg.Holder != "" {
		s.holder = NewHolderClient(cfg.Holder)
	}
	return s
}

// Run listens on cfg.Socket, resumes the mounts the holder keeps (with
// cfg.Holder), mounts again what else the state file records, and serves
// until ctx ends. Then, with a holder, it stops serving every mount and
// leaves its connection to the holder (applications block until the next
// start resumes them); without one it flushes every mount and leaves it
// to die (applications see ENOTCONN: docs/csi.md). With UnmountOnExit it
// flushes and unmounts everything instead.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Socket == "" {
		return errors.New("mountsvc: no socket given; pass --socket /run/cairn/mount.sock")
	}
	if len(cfg.Filers) == 0 {
		return errors.New("mountsvc: no filer address given; pass --filer host:8888")
	}
	s := New(cfg)
	ln, err := listenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)
	s.Restore(ctx)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("mount service ready", "socket", cfg.Socket, "filers", strings.Join(cfg.Filers, ","), "state_file", cfg.StateFile, "holder", cfg.Holder)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("mountsvc: serve on %s: %w", cfg.Socket, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	return s.Stop()
}

// listenUnix listens on path, removing a stale socket left by a dead
// process; a socket some live process still answers on is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := clearSocket("unix", path, "another mount service is serving on %s; stop it first"); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("mountsvc: listen on %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return ln, nil
}

// clearSocket makes way for a socket at path: it creates the directory and
// removes a socket file nobody answers on (left by a dead process). A live
// one is an error, worded by busy (a format with one %s, the path).
func clearSocket(network, path, busy string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mountsvc: socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout(network, path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("mountsvc: "+busy, path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("mountsvc: remove stale socket %s: %w", path, err)
		}
	}
	return nil
}

// Restore resumes every mount whose connection the holder keeps, then
// mounts again every other mount recorded in the state file (a dead FUSE
// mount left at its mount point by the previous process is lazily
// unmounted first). Mounts that cannot be restored are logged and dropped
// from the record (the node plugin stages them again on the CO's retry).
func (s *Service) Restore(ctx context.Context) {
	resumed := s.resumeHeld(ctx)
	recs, err := s.state.load()
	if err != nil {
		s.log.Error("cannot read the state file; starting without restoring mounts", "err", err)
		recs = nil
	}
	for _, m := range recs {
		if resumed[filepath.Clean(m.Dir)] {
			continue
		}
		start := time.Now()
		if _, err := s.Mount(ctx, m); err != nil {
			s.log.Error("could not restore mount; the volume must be staged again", "volume", m.VolumeID, "dir", m.Dir, "err", err)
			continue
		}
		s.log.Info("mounted again from the state file (its old connection was gone: applications that used it saw ENOTCONN)", "volume", m.VolumeID, "dir", m.Dir, "took", time.Since(start).Round(time.Millisecond))
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.saveLocked()
}

// resumeHeld serves again every connection the holder keeps and returns
// their mount points. A connection that cannot be resumed is dropped from
// the holder, so that it ends and the state file's record mounts the
// volume afresh.
func (s *Service) resumeHeld(ctx context.Context) map[string]bool {
	resumed := map[string]bool{}
	if s.holder == nil {
		return resumed
	}
	held, err := s.holder.List(ctx)
	if err != nil {
		s.log.Error("cannot fetch the held FUSE connections; mounting again from the state file instead (applications of the old mounts see ENOTCONN)", "err", err)
		return resumed
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	for _, hc := range held {
		start := time.Now()
		m := hc.Mount
		m.Dir = filepath.Clean(m.Dir)
		if !hc.Clean {
			// The previous process was killed: the kernel is asked to
			// send again what it had read and not answered, and the
			// descriptors of files whose acknowledged writes died with it
			// get EIO at fsync and close (fuse.Resume).
			s.log.Warn("the previous mount service did not hand this mount over (was it killed?); resuming it: requests it left unanswered are served again, and fsync and close fail on descriptors whose acknowledged writes it had not stored",
				"volume", m.VolumeID, "dir", m.Dir)
		}
		mnt, err := s.cfg.Resumer(ctx, s.fuseConfig(m), hc.Dev, hc.Init, !hc.Clean)
		hc.Dev.Close()
		if err == nil {
			// Served again: from now on a kill leaves it unclean.
			if _, merr := s.holder.Mark(ctx, m.Dir, false); merr != nil {
				s.log.Error("could not tell the holder the mount is served again", "dir", m.Dir, "err", merr)
			}
		}
		if err != nil {
			s.log.Error("could not resume a held mount; dropping its connection (its applications see ENOTCONN) and mounting it again", "volume", m.VolumeID, "dir", m.Dir, "err", err)
			if _, err := s.holder.Drop(ctx, m.Dir); err != nil {
				s.log.Error("could not tell the holder to drop the connection", "dir", m.Dir, "err", err)
			}
			continue
		}
		e := &entry{m: m, mnt: mnt, done: make(chan struct{})}
		s.mu.Lock()
		s.mounts[m.Dir] = e
		s.mu.Unlock()
		go s.watch(e)
		resumed[m.Dir] = true
		s.log.Info("resumed a live mount handed over through the holder", "volume", m.VolumeID, "dir", m.Dir, "took", time.Since(start).Round(time.Millisecond))
	}
	return resumed
}

func (s *Service) fuseConfig(m Mount) fuse.Config {
	return fuse.Config{
		Filers: s.cfg.Filers, Dir: m.Dir, Root: m.Root, Uid: -1, Gid: -1,
		ReadOnly: m.ReadOnly, Replication: m.Replication, Collection: m.Collection,
		Logger: s.cfg.Logger.With("volume", m.VolumeID), Security: s.cfg.Security,
		PendingFile: s.pendingFile(m.Dir),
	}
}

// pendingFile is where the mount at dir keeps its record of unstored
// writes (fuse.Config.PendingFile): in a "pending" directory next to the
// state file, or else next to the holder's socket; "" without a holder,
// when no process resumes a connection.
func (s *Service) pendingFile(dir string) string {
	if s.cfg.Holder == "" {
		return ""
	}
	base := s.cfg.StateFile
	if base == "" {
		base = s.cfg.Holder
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return filepath.Join(filepath.Dir(base), "pending", hex.EncodeToString(sum[:12]))
}

// hold hands the connection of a new mount to the holder.
func (s *Service) hold(ctx context.Context, e *entry) {
	if s.holder == nil {
		return
	}
	ho, ok := e.mnt.(handedOver)
	if !ok {
		return
	}
	dev, init, err := ho.Handover()
	if err == nil {
		err = s.holder.Hold(ctx, HeldMount{Mount: e.m, Init: init}, dev)
		dev.Close()
	}
	if err != nil {
		s.log.Error("could not hand the mount's connection to the fuse holder; a restart of the mount service will break this mount (ENOTCONN)", "volume", e.m.VolumeID, "dir", e.m.Dir, "err", err)
	}
}

// unhold tells the holder a mount is gone.
func (s *Service) unhold(dir string) {
	if s.holder == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.holder.Drop(ctx, dir); err != nil {
		s.log.Warn("could not tell the fuse holder a mount is gone; it drops the connection itself once the kernel ends it", "dir", dir, "err", err)
	}
}

// Mount mounts m.Root at m.Dir (see MountRequest). The error is an *Error.
func (s *Service) Mount(ctx context.Context, m Mount) (*MountResponse, error) {
	switch {
	case m.VolumeID == "":
		return nil, &Error{CodeInvalid, "mount: volume_id is required"}
	case !filepath.IsAbs(m.Dir):
		return nil, &Error{CodeInvalid, fmt.Sprintf("mount: dir %q must be an absolute path", m.Dir)}
	case !strings.HasPrefix(m.Root, "/"):
		return nil, &Error{CodeInvalid, fmt.Sprintf("mount: root %q must be an absolute filer path", m.Root)}
	}
	m.Dir = filepath.Clean(m.Dir)
	s.opMu.Lock()
	defer s.opMu.Unlock()

	s.mu.Lock()
	cur := s.mounts[m.Dir]
	var other *entry
	for _, e := range s.mounts {
		if e.m.VolumeID == m.VolumeID && e.m.Dir != m.Dir && e.alive() {
			other = e
		}
	}
	s.mu.Unlock()
	if cur != nil && cur.alive() {
		if cur.m.VolumeID == m.VolumeID && cur.m.Root == m.Root && cur.m.ReadOnly == m.ReadOnly {
			return &MountResponse{Already: true}, nil
		}
		return nil, &Error{CodeConflict, fmt.Sprintf("mount: %s already hosts volume %s (read_only=%v); unmount it first", m.Dir, cur.m.VolumeID, cur.m.ReadOnly)}
	}
	if other != nil {
		return nil, &Error{CodeConflict, fmt.Sprintf("mount: volume %s is already mounted at %s on this node (one FUSE mount per volume per node); unstage it there first", m.VolumeID, other.m.Dir)}
	}
	if err := os.MkdirAll(m.Dir, 0o750); err != nil && !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.EEXIST) {
		return nil, &Error{CodeInternal, fmt.Sprintf("mount: create mount point %s: %v", m.Dir, err)}
	}
	mnt, err := s.cfg.Mounter(ctx, s.fuseConfig(m))
	if err != nil {
		code := CodeInternal
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
			code = CodeNotFound
		case strings.Contains(err.Error(), "no filer could serve"):
			code = CodeUnavailable
		}
		return nil, &Error{code, err.Error()}
	}
	e := &entry{m: m, mnt: mnt, done: make(chan struct{})}
	s.mu.Lock()
	s.mounts[m.Dir] = e
	s.mu.Unlock()
	go s.watch(e)
	s.hold(ctx, e)
	s.saveLocked()
	s.log.Info("mounted volume", "volume", m.VolumeID, "root", m.Root, "dir", m.Dir, "read_only", m.ReadOnly)
	return &MountResponse{}, nil
}

// watch waits for the file system of e to go away; if that was not asked
// for through Unmount, the mount is dropped from the record.
func (s *Service) watch(e *entry) {
	err := e.mnt.Wait()
	if errors.Is(err, fuse.ErrDetached) {
		return // handed over at Stop: still mounted, still recorded
	}
	close(e.done)
	s.mu.Lock()
	ours := s.mounts[e.m.Dir] == e
	s.mu.Unlock()
	if !ours {
		return
	}
	s.unhold(e.m.Dir)
	s.log.Warn("volume was unmounted from outside the mount service; forgetting it", "volume", e.m.VolumeID, "dir", e.m.Dir, "err", err)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	if s.mounts[e.m.Dir] == e {
		delete(s.mounts, e.m.Dir)
	}
	s.mu.Unlock()
	s.saveLocked()
}

// Unmount flushes and unmounts the mount at dir. A mount still in use
// (open files, a bind mount) is detached lazily: the kernel keeps serving
// it until the last user goes.
func (s *Service) Unmount(ctx context.Context, dir string) (*UnmountResponse, error) {
	if !filepath.IsAbs(dir) {
		return nil, &Error{CodeInvalid, fmt.Sprintf("unmount: dir %q must be an absolute path", dir)}
	}
	dir = filepath.Clean(dir)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	e := s.mounts[dir]
	delete(s.mounts, dir)
	s.mu.Unlock()
	if e == nil {
		return &UnmountResponse{}, nil
	}
	s.saveLocked()
	s.unhold(dir)
	if e.alive() {
		if err := e.mnt.FlushAll(ctx); err != nil {
			s.log.Error("flushing before unmount failed; files keep their error", "volume", e.m.VolumeID, "dir", dir, "err", err)
		}
		if err := s.cfg.Unmounter(dir); err != nil {
			return nil, &Error{CodeInternal, fmt.Sprintf("unmount %s: %v", dir, err)}
		}
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			s.log.Info("file system still referenced after unmount; it is served until the last user goes", "dir", dir)
		}
	}
	s.log.Info("unmounted volume", "volume", e.m.VolumeID, "dir", dir)
	return &UnmountResponse{Was: true}, nil
}

// unmount unmounts dir, lazily if it is busy: the kernel then keeps
// serving open files until the last one is closed.
func unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// List returns the hosted mounts, sorted by mount point.
func (s *Service) List() []MountStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MountStatus, 0, len(s.mounts))
	for _, e := range s.mounts {
		out = append(out, MountStatus{Mount: e.m, Alive: e.alive()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

// Stop flushes every mount. With UnmountOnExit it also unmounts them and
// empties the record; otherwise the record is kept for the next start,
// and with a holder every mount is detached: its connection stays with
// the holder for the next start to resume.
func (s *Service) Stop() error {
	s.opMu.Lock()
	s.mu.Lock()
	es := make([]*entry, 0, len(s.mounts))
	for _, e := range s.mounts {
		es = append(es, e)
	}
	s.mu.Unlock()
	s.opMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	handed := 0
	for _, e := range es {
		if !e.alive() {
			continue
		}
		if ho, ok := e.mnt.(handedOver); ok && s.holder != nil && !s.cfg.UnmountOnExit {
			start := time.Now()
			if err := ho.Detach(ctx); err != nil {
				errs = append(errs, fmt.Errorf("mountsvc: hand-over of %s (volume %s): %w; the next start resumes it as after a kill: fsync and close fail on the descriptors of the files whose writes were not stored", e.m.Dir, e.m.VolumeID, err))
			} else if _, err := s.holder.Mark(ctx, e.m.Dir, true); err != nil {
				errs = append(errs, fmt.Errorf("mountsvc: hand-over of %s (volume %s): %w", e.m.Dir, e.m.VolumeID, err))
			}
			handed++
			s.log.Info("stopped serving the mount; its connection waits in the holder for the next start", "volume", e.m.VolumeID, "dir", e.m.Dir, "took", time.Since(start).Round(time.Millisecond))
			continue
		}
		if err := e.mnt.FlushAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("mountsvc: flush %s (volume %s): %w", e.m.Dir, e.m.VolumeID, err))
		}
	}
	if s.cfg.UnmountOnExit {
		for _, e := range es {
			if _, err := s.Unmount(ctx, e.m.Dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.log.Info("mount service stopped", "mounts", len(es), "handed_over", handed, "unmounted", s.cfg.UnmountOnExit)
	return errors.Join(errs...)
}

// saveLocked writes the record of the hosted mounts. opMu must be held.
func (s *Service) saveLocked() {
	ms := make([]Mount, 0)
	for _, st := range s.List() {
		ms = append(ms, st.Mount)
	}
	if err := s.state.save(ms); err != nil {
		s.log.Error("cannot record mounts; a restart of the mount service will not restore them", "err", err)
	}
}

// Handler serves the API described in the package comment.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/mount", func(w http.ResponseWriter, r *http.Request) {
		var req MountRequest
		if !decode(w, r, &req) {
			return
		}
		resp, err := s.Mount(r.Context(), req.Mount)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST /v1/unmount", func(w http.ResponseWriter, r *http.Request) {
		var req UnmountRequest
		if !decode(w, r, &req) {
			return
		}
		resp, err := s.Unmount(r.Context(), req.Dir)
		reply(w, resp, err)
	})
	mux.HandleFunc("GET /v1/mounts", func(w http.ResponseWriter, r *http.Request) {
		reply(w, ListResponse{Mounts: s.List()}, nil)
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		reply(w, nil, &Error{CodeInvalid, "bad request body: " + err.Error()})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{CodeInternal, err.Error()}
		}
		w.WriteHeader(httpStatus(e.Code))
		_ = json.NewEncoder(w).Encode(ErrorResponse{Code: e.Code, Error: e.Msg})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
