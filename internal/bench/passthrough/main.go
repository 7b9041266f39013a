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
package main

import (
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
