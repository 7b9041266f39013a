// Command passthrough mounts a directory at another path through a go-fuse
// loopback file system: every operation goes through FUSE to this process,
// which performs it on the original directory. It is the FUSE baseline of
// scripts/bench-mount.sh: the cost of the kernel round trips and of a Go
// FUSE server, without any of cairn's work behind it.
//
//	passthrough [flags] ORIGDIR MNT
//
// It runs in the foreground and unmounts on SIGINT or SIGTERM. The default
// mount options match cairn's mount (fuse/mount.go): allow_other,
// default_permissions, 1 s entry and attribute timeouts, 1 MiB MaxWrite and
// read-ahead, no READDIRPLUS.
//
// Every read and write goes through this process, as through any FUSE
// file system that keeps its data elsewhere. go-fuse's loopback would
// otherwise give the kernel each open file's descriptor on the original
// disk (kernel passthrough, Linux 6.9 or later, as root), after which the
// kernel reads and writes that file itself and only the metadata reaches
// this process: a bypass of FUSE no file system with its data on other
// machines can use. -kernel-passthrough allows it, to measure it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: passthrough [flags] ORIGDIR MNT\n")
		flag.PrintDefaults()
	}
	allowOther := flag.Bool("allow-other", true, "let other users use the mount (needs root or user_allow_other)")
	timeout := flag.Duration("timeout", time.Second, "entry and attribute timeout")
	maxWrite := flag.Int("max-write", 1<<20, "largest WRITE request in bytes")
	readAhead := flag.Int("max-read-ahead", 1<<20, "kernel read-ahead in bytes")
	readDirPlus := flag.Bool("readdirplus", false, "answer READDIRPLUS (cairn's mount does not)")
	debug := flag.Bool("debug", false, "log every FUSE request")
	kernelPassthrough := flag.Bool("kernel-passthrough", false, "let the kernel read and write open files on the original disk itself (Linux 6.9+, root), bypassing this process")
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	orig, mnt := flag.Arg(0), flag.Arg(1)

	root, err := fs.NewLoopbackRoot(orig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "passthrough: %s: %v\n", orig, err)
		os.Exit(1)
	}
	if !*kernelPassthrough {
		root = servedRoot(root)
	}
	opts := &fs.Options{
		EntryTimeout: timeout,
		AttrTimeout:  timeout,
		MountOptions: fuse.MountOptions{
			AllowOther:         *allowOther,
			Options:            []string{"default_permissions"},
			FsName:             orig,
			Name:               "passthrough",
			MaxWrite:           *maxWrite,
			MaxReadAhead:       *readAhead,
			DisableReadDirPlus: !*readDirPlus,
			Debug:              *debug,
		},
	}
	neg := *timeout
	opts.NegativeTimeout = &neg
	server, err := fs.Mount(mnt, root, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "passthrough: mount %s at %s: %v\n", orig, mnt, err)
		os.Exit(1)
	}
	fmt.Printf("mounted %s at %s\n", orig, mnt)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		server.Wait()
		close(done)
	}()
	select {
	case <-done:
		fmt.Printf("%s was unmounted\n", mnt)
		return
	case s := <-sigs:
		fmt.Printf("%v: unmounting %s\n", s, mnt)
	}
	if err := server.Unmount(); err != nil {
		// Busy (a process still has files open): detach it lazily so the
		// mount point does not stay behind after this process is gone.
		fmt.Fprintf(os.Stderr, "passthrough: unmount %s: %v; unmounting lazily\n", mnt, err)
		if out, err := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "passthrough: fusermount3 -u -z %s: %v: %s\n", mnt, err, out)
			os.Exit(1)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "passthrough: %s: server loop did not stop after unmount\n", mnt)
		os.Exit(1)
	}
}

// node is a loopback node whose files are served by this process: they
// do not give the kernel their descriptor (see -kernel-passthrough). Its
// children are nodes too.
type node struct {
	*fs.LoopbackNode
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
)

// servedRoot makes the loopback root from fs.NewLoopbackRoot serve its
// files' reads and writes itself, and its children's.
func servedRoot(root fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{root.(*fs.LoopbackNode)}
}

func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{ops.(*fs.LoopbackNode)}
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	return served(fh), fuseFlags, errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, served(fh), fuseFlags, errno
}

// servedFile is a loopback file that offers the kernel no descriptor to
// read and write by itself.
type servedFile struct {
	*fs.LoopbackFile
}

func (servedFile) PassthroughFd() (int, bool) { return -1, false }

func served(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return servedFile{lf}
	}
	return fh
}
