// Package fuse is the cairn mount: a FUSE file system on the raw
// go-fuse protocol API, backed by a filer group (namespace) and volume
// servers (data).
//
// The kernel node id of every inode is its filer inode number, except
// node id 1 (FUSE_ROOT_ID), which is the inode of the mounted subtree. The
// mount therefore keeps no per-node state that would have to survive a
// restart of the process, and Forget is a no-op. Open files keep their
// state per inode (see file.go); a file handle only names an inode and
// the open flags, and an unknown handle falls back to the inode's state,
// as if the file had been reopened.
//
// Durability (docs: DESIGN.md, rules 3 and 4): every namespace operation
// is one filer command, committed through Raft before it returns. File
// data is buffered per inode and made durable by a flush: the buffered
// bytes are stored as needles on every replica and then referenced, with
// the new size, by one CommitSlices command. fsync and close flush and
// report the outcome; a failed flush keeps the data and makes every later
// fsync and close of the file fail until a flush succeeds.
package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairn-storage/cairn/filer"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
)

// Config configures a mount.
type Config struct {
	// Filers are the filer HTTP addresses (gRPC at port+10000).
	Filers []string
	// Dir is the mount point.
	Dir string
	// Root is the filer path of the directory to mount ("" or "/": all).
	Root string
	// Uid and Gid, when not -1, are reported as the owner of every inode;
	// -1 reports the stored owner. Note the zero value presents root.
	Uid, Gid int
	// Umask clears permission bits in the reported modes.
	Umask uint32
	// ReadOnly mounts read-only.
	ReadOnly bool
	// Replication and Collection place the needles written by the mount
	// (empty: the master's defaults).
	Replication, Collection string
	// CacheDir, when set, is where buffered writes past SpillMemory bytes
	// in memory spill to (one unlinked file per mount, at most SpillLimit
	// bytes); writers then wait for uploads only past SpillMemory plus
	// SpillLimit buffered bytes. Empty: everything is buffered in memory
	// (at most 256 MiB per mount). Zero SpillMemory or SpillLimit: 64 MiB
	// and 4 GiB.
	CacheDir                string
	SpillMemory, SpillLimit int64
	// InlineLimit is the most bytes a flush may hold to be committed with
	// its bytes to the filer (inline data: one durable step, the Raft
	// log's, instead of a needle's and then the Raft log's). Zero: 64
	// KiB; negative: never. At most filer.MaxInlineBytes.
	InlineLimit int
	// PendingFile, when set, is a file (64 KiB) where the mount lists the
	// files holding writes it acknowledged but has not stored yet, in
	// memory shared with the kernel's page cache, so that the list
	// outlives a SIGKILL of the process. Resume reads the list its
	// killed predecessor left, to fail fsync and close of the
	// descriptors whose writes were lost. Mounts that may be resumed set
	// it (the mount service does); the file is rewritten at each mount
	// and resume and removed at unmount.
	PendingFile string
	Logger      *slog.Logger
	Security    *security.Config
}

// Mounted is a mounted cairn file system, returned by Mount and Resume.
type Mounted struct {
	fs *fileSystem
	// Exactly one of srv (the mount's own serve loop: mounted as root, or
	// resumed) and server (go-fuse's server, mounted through fusermount3
	// when not root; it cannot be handed over) is set.
	srv    *server
	init   []byte // the connection's INIT request (srv only)
	server *gofuse.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when the server loop has returned
	subWG  sync.WaitGroup

	detached    atomic.Bool // Detach stopped serving; the connection lives on
	unmountOnce sync.Once
	unmountErr  error
}

// ErrDetached is what Wait returns after Detach: the file system was not
// unmounted, its connection was left to another process.
var ErrDetached = errors.New("fuse: mount detached for a hand-over; the connection lives on in the process holding it")

// Tunables of the write path.
const (
	maxNeedle       = 4 << 20     // bytes per uploaded needle
	uploadParallel  = 8           // needles uploaded at once per flush
	totalDirtyLimit = 256 << 20   // dirty bytes per mount before writers flush
	uploadLease     = time.Hour   // how long an uploaded needle may stay unreferenced
	attrTimeout     = time.Second // how long the kernel caches entries and attributes
)

// Mount resolves cfg.Root, mounts the file system at cfg.Dir and serves it
// in the background until Unmount, or until it is unmounted from outside
// (then Wait returns). A dead FUSE mount left at cfg.Dir by a crashed
// process is lazily unmounted first. As root the mount is made with
// mount(2) on a /dev/fuse descriptor of its own and served by the mount's
// own loop (serve.go), so it can be handed over (Handover, Detach,
// Resume); otherwise through fusermount3 and go-fuse's server.
func Mount(ctx context.Context, cfg Config) (*Mounted, error) {
	fs, opts, err := newMount(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := cleanStaleMount(cfg.Dir, fs.log); err != nil {
		fs.close()
		return nil, err
	}
	if cfg.PendingFile != "" {
		fs.pending = openPendingOrWarn(cfg.PendingFile, fs.log)
	}
	if os.Geteuid() != 0 {
		return mountFusermount(fs, opts)
	}
	fd, err := mountDirect(cfg.Dir, opts, cfg.ReadOnly)
	if err != nil {
		fs.close()
		return nil, fmt.Errorf("fuse: mount at %s: %w (is /dev/fuse present?)", cfg.Dir, err)
	}
	conn, err := newDevConn(fd)
	if err != nil {
		_ = unix.Unmount(cfg.Dir, unix.MNT_DETACH)
		fs.close()
		return nil, err
	}
	fs.order = newWriteOrder()
	srv := newServer(conn, fs, fs.order, opts, fs.log)
	srv.replied = fs.replied
	srv.inflight = fs.pending
	init, err := srv.handshake()
	if err != nil {
		_ = unix.Unmount(cfg.Dir, unix.MNT_DETACH)
		conn.close()
		fs.close()
		return nil, fmt.Errorf("fuse: mount at %s: %w", cfg.Dir, err)
	}
	m := serve(fs, srv, init)
	pollHack(cfg.Dir, fs.log)
	setReadAhead(cfg.Dir, fs.log)
	fs.log.Info("mounted", "root", cfg.Root, "filers", fs.client.Addrs(), "read_only", cfg.ReadOnly)
	return m, nil
}

// pollHack makes the kernel learn, once per connection, that the file
// system does not implement POLL: it opens go-fuse's reserved name at the
// root and polls it, and the protocol server answers that POLL with ENOSYS.
// Without it a Go process that opens files on a mount it serves itself
// (the tests do) registers them with its epoll set, and epoll then sends
// POLL requests while holding the lock the threads that would answer them
// need. A resumed connection keeps what the kernel learnt.
func pollHack(dir string, log *slog.Logger) {
	fd, err := unix.Open(filepath.Join(dir, ".go-fuse-epoll-hack"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Debug("poll probe of the new mount failed", "err", err)
		return
	}
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	unix.Close(fd)
}

// kernelReadAhead is the kernel's read-ahead window on the mount (its
// page cache reads this far ahead of a sequential reader, in READ
// requests of up to MaxWrite bytes, several at once). The kernel offers
// only its default (128 KiB) in INIT and takes no more than it offered,
// so setReadAhead sets it after mounting.
const kernelReadAhead = 4 << 20

// setReadAhead sets the kernel's read-ahead window of the FUSE mount at
// dir (the read_ahead_kb of its backing device info in sysfs) to
// kernelReadAhead. With the default 128 KiB a sequential reader's READ
// requests come 128 to 256 KiB at a time, one or two at once, and each
// costs a round trip through the kernel and the serve loop. The setting
// lives as long as the connection, so a resumed mount keeps it. Failure
// (no sysfs, no root) leaves the default: reads work, slower.
func setReadAhead(dir string, log *slog.Logger) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		log.Warn("could not find the mount's device to set its read-ahead; sequential reads stay at the kernel's default window", "err", err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(fmt.Sprintf("%d", kernelReadAhead>>10)), 0); err != nil {
		log.Warn("could not set the kernel's read-ahead of the mount; sequential reads stay at the kernel's default window", "path", p, "err", err)
		return
	}
	log.Debug("set the kernel's read-ahead of the mount", "path", p, "bytes", kernelReadAhead)
}

// Resume serves a FUSE connection that is already mounted at cfg.Dir and
// was served by another process: dev is its /dev/fuse descriptor (Resume
// uses a duplicate; the caller keeps dev) and init the INIT request the
// kernel sent when it was mounted (Handover). cfg must be the mount's
// configuration then: the kernel keeps what was negotiated. Requests the
// kernel queued while nobody served the connection are answered now;
// file and directory handles opened before are adopted on first use.
//
// killed says the previous process did not hand the connection over (it
// was killed, or crashed): the kernel is asked to send again the requests
// it had read and not answered (Linux 6.9 or later; an older kernel gets
// them answered with EIO, see takeOverUnanswered), and cfg.PendingFile
// must name the record that process kept, which tells whose acknowledged
// writes were lost with it and which requests it was serving.
// A request that process had carried out but not answered is carried out
// again: idempotent ones (reads, writes, fsync, stat, lookup) give the
// same answer, and namespace changes get their first answer from the
// filer session they ran under (applyExact). Where that cannot tell, an
// unlink, rmdir or rename that finds its work done succeeds (resentGone),
// a creation that finds its name taken fails with EEXIST, and a rename
// exchange fails with EIO.
func Resume(ctx context.Context, cfg Config, dev *os.File, init []byte, killed bool) (*Mounted, error) {
	fdn := int(dev.Fd())
	if !IsDevice(fdn) {
		return nil, fmt.Errorf("fuse: resume %s: the descriptor handed over is not /dev/fuse", cfg.Dir)
	}
	fs, opts, err := newMount(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.PendingFile != "" {
		// Handle ids of this process start above every id the kernel
		// holds from before (newFileSystem): those below were opened
		// before the hand-over.
		fs.mu.Lock()
		start := fs.mu.nextFh + 1
		fs.mu.Unlock()
		fs.pending, fs.lost, err = openPending(cfg.PendingFile, true, start)
		switch {
		case err != nil && killed:
			// What the killed process lost cannot be known.
			fs.close()
			return nil, fmt.Errorf("fuse: resume %s: %w", cfg.Dir, err)
		case err != nil:
			// Handed over cleanly: nothing was lost at this hand-over;
			// only the losses of an earlier kill, if any, are forgotten.
			fs.log.Warn("could not read the record of unstored writes the previous process left; starting a new one", "err", err)
			fs.pending = openPendingOrWarn(cfg.PendingFile, fs.log)
		}
	} else if killed {
		fs.close()
		return nil, fmt.Errorf("fuse: resume %s after a kill needs the record of unstored writes (Config.PendingFile)", cfg.Dir)
	}
	fd, err := unix.FcntlInt(uintptr(fdn), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		fs.close()
		return nil, fmt.Errorf("fuse: resume %s: duplicate the descriptor: %w", cfg.Dir, err)
	}
	conn, err := newDevConn(fd)
	if err != nil {
		fs.close()
		return nil, err
	}
	fs.order = newWriteOrder()
	srv := newServer(conn, fs, fs.order, opts, fs.log)
	srv.replied = fs.replied
	srv.inflight = fs.pending
	if err := srv.resume(init); err != nil {
		conn.close()
		fs.close()
		return nil, fmt.Errorf("fuse: resume %s: %w", cfg.Dir, err)
	}
	if killed {
		if err := fs.takeOverUnanswered(conn); err != nil {
			conn.close()
			fs.close()
			return nil, fmt.Errorf("fuse: resume %s: %w", cfg.Dir, err)
		}
	}
	if fs.pending != nil {
		fs.mu.Lock()
		for ino, slot := range fs.pending.orphans {
			fs.mu.adopted[ino] = slot
		}
		fs.mu.Unlock()
	}
	m := serve(fs, srv, append([]byte(nil), init...))
	go fs.sweepAdopted()
	if !fs.lost.empty() {
		// The kernel's pages and attributes of those files may show
		// the lost bytes: drop them, so that reads show what is stored.
		for ino := range fs.lost.cutoff {
			fs.dropPages(ino)
		}
		mountLostFiles.Add(float64(fs.lost.fresh))
		if fs.lost.fresh > 0 || fs.lost.all != 0 {
			fs.log.Error("a mount process was killed with writes it had acknowledged but not stored; fsync and close fail with EIO on the descriptors of those files opened before the kill",
				"files", fs.lost.fresh, "every_file", fs.lost.all != 0)
		}
		if carried := len(fs.lost.cutoff) - fs.lost.fresh; carried > 0 {
			fs.log.Info("descriptors of files whose writes died with an earlier killed mount process still fail fsync and close", "files", carried)
		}
	}
	fs.log.Info("resumed serving a live mount", "root", cfg.Root, "filers", fs.client.Addrs(), "read_only", cfg.ReadOnly, "after_kill", killed)
	return m, nil
}

// resendEnv, set to "off", makes a process resuming a mount after a kill
// answer the requests the killed process had read with EIO instead of
// asking the kernel to send them again, as on a kernel before Linux 6.9.
const resendEnv = "CAIRN_FUSE_RESEND"

// takeOverUnanswered deals with the requests a killed process had read
// from conn and not answered, before this process reads any: the kernel
// waits for their replies forever. It asks the kernel to send them again
// (Linux 6.9 or later), and they are served like any other. Where the
// kernel cannot, they are answered with EIO, from the list of requests in
// flight the killed process kept in its record of unstored writes: an
// application sees an I/O error once for each (the outcome of a change
// among them is unknown to it, as after any EIO), and the mount goes on.
// Without that list (a record of an earlier version) it fails.
func (fs *fileSystem) takeOverUnanswered(conn *devConn) error {
	var why error
	if os.Getenv(resendEnv) == "off" {
		why = fmt.Errorf("asking the kernel to send them again is turned off (%s=off)", resendEnv)
	} else if why = conn.resend(); why == nil {
		return nil
	}
	t := fs.pending
	if t == nil || !t.knowsUnanswered {
		return fmt.Errorf("%w; the killed process kept no list of the requests it had read, so they cannot be answered either", why)
	}
	answered := 0
	for _, u := range t.unanswered {
		ok, err := conn.replyError(u, unix.EIO)
		if err != nil {
			return err
		}
		if ok {
			answered++
		}
	}
	mountFailedAfterKill.Add(float64(answered))
	fs.log.Warn("the kernel cannot send again the requests the killed mount process had read and not answered; they were answered with EIO (their applications see one I/O error each; the outcome of a change among them is unknown)",
		"requests", answered, "why", why)
	return nil
}

// openPendingOrWarn starts a fresh record of unstored writes at path. A
// failure is logged, not returned: the mount works without the record,
// only a kill of its process can then not be recovered from (Resume
// refuses to resume such a mount after a kill).
func openPendingOrWarn(path string, log *slog.Logger) *pendingTable {
	t, _, err := openPending(path, false, 0)
	if err != nil {
		log.Error("cannot keep the record of unstored writes; the mount works, but if its process is killed the mount cannot be resumed (applications will see ENOTCONN)", "err", err)
		// An older record left there must not be read as this mount's.
		_ = os.Remove(path)
		return nil
	}
	return t
}

// newMount resolves cfg.Root and builds the file system and the mount
// options, which must be the same for a mount and its resumption.
func newMount(ctx context.Context, cfg Config) (*fileSystem, *gofuse.MountOptions, error) {
	if len(cfg.Filers) == 0 {
		return nil, nil, errors.New("fuse: no filer address given; pass --filer host:8888")
	}
	if cfg.Dir == "" {
		return nil, nil, errors.New("fuse: no mount point given; pass --dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	log := cfg.Logger.With("component", "mount", "dir", cfg.Dir)
	client := filer.NewClient(cfg.Filers, cfg.Security)
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	root, err := client.Resolve(rctx, cfg.Root)
	rcancel()
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("fuse: resolve %s on filer %s: %w", cfg.Root, client.Addrs(), err)
	}
	if !root.IsDir() {
		client.Close()
		return nil, nil, fmt.Errorf("fuse: %s on filer %s is not a directory", cfg.Root, client.Addrs())
	}
	var spill *spillStore
	if cfg.CacheDir != "" {
		mem, limit := cfg.SpillMemory, cfg.SpillLimit
		if mem <= 0 {
			mem = defaultSpillMemory
		}
		if limit <= 0 {
			limit = defaultSpillLimit
		}
		if spill, err = openSpill(cfg.CacheDir, limit); err != nil {
			client.Close()
			return nil, nil, err
		}
		cfg.SpillMemory, cfg.SpillLimit = mem, limit
	}
	bg, cancel := context.WithCancel(context.Background())
	fs := newFileSystem(bg, cfg, client, root.Ino, log)
	fs.cancel = cancel
	if spill != nil {
		fs.spill = spill
		fs.limits = limitsFor(true, cfg.SpillMemory, cfg.SpillLimit)
		log.Info("buffered writes past the memory bound spill to the cache directory",
			"cache_dir", cfg.CacheDir, "memory_bytes", cfg.SpillMemory, "spill_limit_bytes", cfg.SpillLimit)
	}
	fs.data = &filer.DataClient{
		Assign: client.Assign,
		Lookup: client.LookupVolume,
		Inline: client.ReadInline,
		Reserve: func(ctx context.Context, fids []string) error {
			_, err := client.Apply(ctx, &filer.BeginUpload{Fids: fids, Expires: time.Now().Add(uploadLease).UnixNano()})
			return err
		},
		Batch:  16,
		HTTP:   httpx.Client(cfg.Security, 60*time.Second),
		Scheme: httpx.Scheme(cfg.Security),
	}
	opts := &gofuse.MountOptions{
		AllowOther:         true,
		Options:            []string{"default_permissions"},
		FsName:             "cairn",
		Name:               "cairn",
		MaxWrite:           1 << 20,
		MaxReadAhead:       kernelReadAhead,
		DisableReadDirPlus: true,
		// The kernel must not drop a file's cached pages because a stat
		// shows a new mtime: that is this mount's own writes as often as
		// anybody's, and a database lost its whole cache to every
		// fsync-then-lseek. The mount drops pages itself when a file
		// changed elsewhere (invalidate, dropPages, keepCache).
		ExplicitDataCacheControl: true,
		Logger:                   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.ReadOnly {
		opts.Options = append(opts.Options, "ro")
	}
	return fs, opts, nil
}

// close releases what newMount set up, for a mount that did not start.
func (fs *fileSystem) close() {
	fs.cancel()
	fs.client.Close()
	fs.closeSpill()
	_ = fs.pending.close()
}

// closeSpill closes the spill file (its space goes back with it).
func (fs *fileSystem) closeSpill() {
	if fs.spill != nil {
		if err := fs.spill.close(); err != nil {
			fs.log.Warn("closing the spill file failed", "err", err)
		}
	}
}

// serve starts the serve loop and the change watcher of a mount.
func serve(fs *fileSystem, srv *server, init []byte) *Mounted {
	fs.server = srv.conn
	m := &Mounted{fs: fs, srv: srv, init: init, cancel: fs.cancel, done: make(chan struct{})}
	srv.start()
	go func() {
		<-srv.done
		close(m.done)
	}()
	m.subWG.Add(1)
	go func() { defer m.subWG.Done(); fs.watch(fs.ctx) }()
	return m
}

// mountFusermount mounts through fusermount3 and serves with go-fuse's
// server (no hand-over possible): the way for a mount run without root.
func mountFusermount(fs *fileSystem, opts *gofuse.MountOptions) (*Mounted, error) {
	cfg := fs.cfg
	server, err := gofuse.NewServer(fs, cfg.Dir, opts)
	if err != nil {
		fs.close()
		return nil, fmt.Errorf("fuse: mount at %s: %w (is /dev/fuse present and fusermount3 installed?)", cfg.Dir, err)
	}
	m := &Mounted{fs: fs, server: server, cancel: fs.cancel, done: make(chan struct{})}
	go func() {
		server.Serve()
		close(m.done)
	}()
	if err := server.WaitMount(); err != nil {
		_ = server.Unmount()
		fs.close()
		return nil, fmt.Errorf("fuse: mount at %s: %w", cfg.Dir, err)
	}
	m.subWG.Add(1)
	go func() { defer m.subWG.Done(); fs.watch(fs.ctx) }()
	fs.log.Info("mounted through fusermount3 (not root: this mount cannot be handed over to another process)", "root", cfg.Root, "filers", fs.client.Addrs(), "read_only", cfg.ReadOnly)
	return m, nil
}

// cleanStaleMount lazily unmounts dir if it is a FUSE mount whose server
// is gone (stat fails with ENOTCONN).
func cleanStaleMount(dir string, log *slog.Logger) error {
	// statfs always reaches the file system's server (stat may be answered
	// from the kernel's attribute cache), and dead mounts may be stacked.
	for range 16 {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil || !errors.Is(err, syscall.ENOTCONN) {
			return nil
		}
		log.Warn("mount point is a dead FUSE mount left by a previous process; unmounting it", "dir", dir)
		out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fuse: %s is a dead mount and fusermount3 -u -z failed: %v: %s", dir, err, out)
		}
	}
	return fmt.Errorf("fuse: %s is still a dead mount after 16 lazy unmounts; unmount it by hand", dir)
}

// Wait blocks until the file system is unmounted, or detached (then it
// returns ErrDetached).
func (m *Mounted) Wait() error {
	<-m.done
	if m.detached.Load() {
		return ErrDetached
	}
	return m.shutdown()
}

// FlushAll makes the buffered data of every open file durable. It returns
// the first error; files that failed keep their data and their error.
func (m *Mounted) FlushAll(ctx context.Context) error { return m.fs.flushAll(ctx) }

// Handover returns what another process needs to go on serving this
// mount with Resume: a duplicate of its /dev/fuse descriptor (the caller
// closes it) and the INIT request the kernel sent at mount. Mounts made
// through fusermount3 (not root) cannot be handed over.
func (m *Mounted) Handover() (*os.File, []byte, error) {
	if m.srv == nil {
		return nil, nil, fmt.Errorf("fuse: %s was mounted through fusermount3 (not as root) and cannot be handed over", m.fs.cfg.Dir)
	}
	dev, err := m.srv.conn.dup()
	if err != nil {
		return nil, nil, err
	}
	return dev, append([]byte(nil), m.init...), nil
}

// Detach stops serving without unmounting, for a hand-over to the next
// process: it stops reading requests, lets the requests already read
// finish and answers them, flushes every file, and closes this process's
// descriptor. The connection lives on as long as another process holds a
// duplicate (Handover); requests the kernel receives meanwhile wait in its
// queue, so applications block instead of failing. The flush error, if
// any, is returned; Wait returns ErrDetached.
func (m *Mounted) Detach(ctx context.Context) error {
	if m.srv == nil {
		return fmt.Errorf("fuse: %s was mounted through fusermount3 (not as root) and cannot be handed over", m.fs.cfg.Dir)
	}
	m.detached.Store(true)
	m.srv.stop()
	ferr := m.fs.flushAll(ctx)
	if ferr != nil {
		ferr = fmt.Errorf("fuse: flush %s before the hand-over: %w", m.fs.cfg.Dir, ferr)
	}
	return errors.Join(ferr, m.shutdown())
}

// Unmount flushes every dirty file, then unmounts. A flush failure is
// returned (after unmounting) and logged per file.
func (m *Mounted) Unmount() error {
	ferr := m.fs.flushAll(context.Background())
	var uerr error
	select {
	case <-m.done:
	default:
		if m.srv != nil {
			uerr = unmountDir(m.fs.cfg.Dir)
		} else {
			uerr = m.server.Unmount()
		}
		if uerr != nil {
			uerr = fmt.Errorf("fuse: unmount %s: %w (files still open? fusermount3 -u -z unmounts lazily)", m.fs.cfg.Dir, uerr)
		} else {
			<-m.done
		}
	}
	serr := m.shutdown()
	return errors.Join(ferr, uerr, serr)
}

// unmountDir unmounts dir, retrying for a while when it is busy (the
// kernel may still be releasing files closed just before).
func unmountDir(dir string) error {
	delay := 5 * time.Millisecond
	var err error
	for range 6 {
		if err = unix.Unmount(dir, 0); err == nil || !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(delay)
		delay *= 3
	}
	return err
}

func (m *Mounted) shutdown() error {
	m.unmountOnce.Do(func() {
		m.cancel()
		m.subWG.Wait()
		m.fs.client.Close()
		m.fs.closeSpill()
		if err := m.fs.pending.close(); err != nil {
			m.fs.log.Warn("unmapping the record of unstored writes failed", "err", err)
		}
		if !m.detached.Load() && m.fs.cfg.PendingFile != "" {
			// Unmounted: no process will resume this connection.
			_ = os.Remove(m.fs.cfg.PendingFile)
		}
		if m.srv != nil {
			if err := m.srv.err(); err != nil && !errors.Is(err, errStopped) {
				m.unmountErr = err
			}
			m.srv.conn.close()
		}
		if m.detached.Load() {
			m.fs.log.Info("stopped serving; the connection is left to the process holding it")
		} else {
			m.fs.log.Info("unmounted")
		}
	})
	return m.unmountErr
}
