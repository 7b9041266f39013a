package fuse

import (
	"sync/atomic"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The mount's Prometheus series. There is one set per process: every
// mount in it adds to the same series (like the kernel's counters), so a
// process that hosts several mounts reports their sum. They are measured
// at the RawFileSystem method level, whatever loop serves the requests.
//
// Names are fixed: dashboards use them.
var (
	mountOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cairn_mount_ops_total",
		Help: "FUSE requests answered by the mount, by operation and result (ok, or the errno name such as ENOENT or EIO).",
	}, []string{"op", "result"})
	mountOpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cairn_mount_op_duration_seconds",
		Help:    "Time the mount took to answer a FUSE request, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18), // 50 µs .. 6.5 s
	}, []string{"op"})
	mountCacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_mount_cache_hits_total",
		Help: "Chunk reads served from the mount's chunk cache (including chunks read ahead).",
	})
	mountCacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_mount_cache_misses_total",
		Help: "Chunk reads that had to fetch the chunk from a volume server.",
	})
	mountFlushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cairn_mount_flushes_total",
		Help: "Flushes of buffered writes committed, by where the bytes went: filer (small flushes committed with their bytes, inline) or volumes (needles on the volume servers, then a commit).",
	}, []string{"to"})
	mountResent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_mount_resent_requests_total",
		Help: "FUSE requests served after the kernel sent them again: requests a killed mount process had read and not answered, taken over by the process that resumed the mount.",
	})
	mountFailedAfterKill = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_mount_failed_after_kill_requests_total",
		Help: "FUSE requests a killed mount process had read and not answered, answered with EIO by the process that resumed the mount because the kernel could not send them again (before Linux 6.9).",
	})
	mountLostFiles = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_mount_lost_write_files_total",
		Help: "Files whose acknowledged but unstored writes died with a killed mount process, as found by the process that resumed the mount; fsync and close fail with EIO on their descriptors opened before the kill.",
	})
	// dirtyTotal is the sum of fileSystem.dirtyBytes over the process.
	dirtyTotal   atomic.Int64
	mountDirties = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_mount_dirty_bytes",
		Help: "Bytes written through the mount and not yet durable (buffered, waiting for a flush, fsync or close).",
	}, func() float64 { return float64(dirtyTotal.Load()) })
)

// Collectors returns the mount's Prometheus collectors, for the registry
// of whatever serves /metrics in the process (cairn mount --metrics-addr,
// cairn server, the CSI mount service). They are shared by every mount in
// the process; register them once per registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{mountOps, mountOpSeconds, mountCacheHits, mountCacheMisses, mountDirties, mountFlushes, mountResent, mountFailedAfterKill, mountLostFiles}
}

// Operation names, the values of the op label.
const (
	opLookup      = "lookup"
	opGetAttr     = "getattr"
	opSetAttr     = "setattr"
	opMknod       = "mknod"
	opMkdir       = "mkdir"
	opUnlink      = "unlink"
	opRmdir       = "rmdir"
	opRename      = "rename"
	opLink        = "link"
	opSymlink     = "symlink"
	opReadlink    = "readlink"
	opFsyncDir    = "fsyncdir"
	opStatFs      = "statfs"
	opOpen        = "open"
	opCreate      = "create"
	opTmpfile     = "tmpfile"
	opRead        = "read"
	opWrite       = "write"
	opFlush       = "flush"
	opFsync       = "fsync"
	opRelease     = "release"
	opFallocate   = "fallocate"
	opLseek       = "lseek"
	opOpenDir     = "opendir"
	opReadDir     = "readdir"
	opReadDirPlus = "readdirplus"
	opReleaseDir  = "releasedir"
	opGetXAttr    = "getxattr"
	opListXAttr   = "listxattr"
	opSetXAttr    = "setxattr"
	opRemoveXAttr = "removexattr"
)

// observe records one answered request: deferred at the top of a
// RawFileSystem method as defer observe(op, time.Now(), &st).
func observe(op string, start time.Time, st *gofuse.Status) {
	mountOpSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	mountOps.WithLabelValues(op, resultLabel(*st)).Inc()
}

// observeVoid records a request that has no status to answer (release).
func observeVoid(op string, start time.Time) {
	ok := gofuse.OK
	observe(op, start, &ok)
}

// resultLabel is "ok" or the errno's name. The errno set is small and
// fixed, so the label's cardinality stays bounded.
func resultLabel(st gofuse.Status) string {
	if st.Ok() {
		return "ok"
	}
	if name := unix.ErrnoName(syscall.Errno(st)); name != "" {
		return name
	}
	return "errno_other"
}

// addDirty moves this mount's and the process's count of buffered bytes
// by n, mem of them in memory (the rest in the spill file).
func (fs *fileSystem) addDirty(n, mem int64) {
	fs.dirtyBytes.Add(n)
	dirtyTotal.Add(n)
	if m := fs.memBytes.Add(mem); mem > 0 {
		for p := fs.memPeak.Load(); m > p && !fs.memPeak.CompareAndSwap(p, m); p = fs.memPeak.Load() {
		}
	}
}
