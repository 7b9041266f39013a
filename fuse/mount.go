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
	"os/exec"
	"sync"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

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
	Logger                  *slog.Logger
	Security                *security.Config
}

// Mounted is a mounted cairn file system, returned by Mount.
type Mounted struct {
	fs     *fileSystem
	server *gofuse.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when the server loop has returned
	subWG  sync.WaitGroup

	unmountOnce sync.Once
	unmountErr  error
}

// Tunables of the write path.
const (
	maxNeedle       = 4 << 20     // bytes per uploaded needle
	uploadParallel  = 4           // needles uploaded at once per flush
	fileDirtyLimit  = 8 << 20     // dirty bytes per file before a writer flushes
	totalDirtyLimit = 256 << 20   // dirty bytes per mount before writers flush
	uploadLease     = time.Hour   // how long an uploaded needle may stay unreferenced
	attrTimeout     = time.Second // how long the kernel caches entries and attributes
)

// Mount resolves cfg.Root, mounts the file system at cfg.Dir and serves it
// in the background until Unmount, or until it is unmounted from outside
// (then Wait returns). A dead FUSE mount left at cfg.Dir by a crashed
// process is lazily unmounted first.
func Mount(ctx context.Context, cfg Config) (*Mounted, error) {
	if len(cfg.Filers) == 0 {
		return nil, errors.New("fuse: no filer address given; pass --filer host:8888")
	}
	if cfg.Dir == "" {
		return nil, errors.New("fuse: no mount point given; pass --dir")
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
		return nil, fmt.Errorf("fuse: resolve %s on filer %s: %w", cfg.Root, client.Addrs(), err)
	}
	if !root.IsDir() {
		client.Close()
		return nil, fmt.Errorf("fuse: %s on filer %s is not a directory", cfg.Root, client.Addrs())
	}
	if err := cleanStaleMount(cfg.Dir, log); err != nil {
		client.Close()
		return nil, err
	}

	bg, cancel := context.WithCancel(context.Background())
	fs := newFileSystem(bg, cfg, client, root.Ino, log)
	fs.data = &filer.DataClient{
		Assign: client.Assign,
		Lookup: client.LookupVolume,
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
		MaxReadAhead:       1 << 20,
		DisableReadDirPlus: true,
		Logger:             slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.ReadOnly {
		opts.Options = append(opts.Options, "ro")
	}
	server, err := gofuse.NewServer(fs, cfg.Dir, opts)
	if err != nil {
		cancel()
		client.Close()
		return nil, fmt.Errorf("fuse: mount at %s: %w (is /dev/fuse present and fusermount3 installed?)", cfg.Dir, err)
	}
	m := &Mounted{fs: fs, server: server, cancel: cancel, done: make(chan struct{})}
	go func() {
		server.Serve()
		close(m.done)
	}()
	if err := server.WaitMount(); err != nil {
		_ = server.Unmount()
		cancel()
		client.Close()
		return nil, fmt.Errorf("fuse: mount at %s: %w", cfg.Dir, err)
	}
	m.subWG.Add(1)
	go func() { defer m.subWG.Done(); fs.watch(bg) }()
	log.Info("mounted", "root", cfg.Root, "filers", client.Addrs(), "read_only", cfg.ReadOnly)
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

// Wait blocks until the file system is unmounted.
func (m *Mounted) Wait() error {
	<-m.done
	return m.shutdown()
}

// FlushAll makes the buffered data of every open file durable. It returns
// the first error; files that failed keep their data and their error.
func (m *Mounted) FlushAll(ctx context.Context) error { return m.fs.flushAll(ctx) }

// Unmount flushes every dirty file, then unmounts. A flush failure is
// returned (after unmounting) and logged per file.
func (m *Mounted) Unmount() error {
	ferr := m.fs.flushAll(context.Background())
	var uerr error
	select {
	case <-m.done:
	default:
		uerr = m.server.Unmount()
		if uerr != nil {
			uerr = fmt.Errorf("fuse: unmount %s: %w (files still open? fusermount3 -u -z unmounts lazily)", m.fs.cfg.Dir, uerr)
		} else {
			<-m.done
		}
	}
	serr := m.shutdown()
	return errors.Join(ferr, uerr, serr)
}

func (m *Mounted) shutdown() error {
	m.unmountOnce.Do(func() {
		m.cancel()
		m.subWG.Wait()
		m.fs.client.Close()
		m.fs.log.Info("unmounted")
	})
	return m.unmountErr
}
