package raftutil

import (
	"sync"
	"sync/atomic"

	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// The Raft log's fsync is the one durable step of every filer mutation
// (and of a small write committed inline), so its cost is the floor of an
// fsync through a mount. raft-wal preallocates each segment file with
// fallocate: the blocks are reserved but unwritten, and the first write
// into each of them turns it into a written extent, a metadata change
// that every following fsync must commit to the file system's journal.
// Measured on this machine's ext4, a 4 KiB append plus fsync took 0.4–2.2
// ms into fallocated space and 0.18–0.46 ms into space already written
// with zeros. So the segments this member creates are zero-filled a little
// ahead of the log's writes: zeros are written only past the end of the
// last write, never over log data, and become written extents with the
// next fsync the log does anyway. A segment opened again after a restart
// is left as it is.

// zeroAhead is how far past the end of the last write a new segment is
// kept filled with zeros; it is refilled in steps of zeroAhead.
const zeroAhead = 1 << 20

// walVFS is raft-wal's file system with zero-filled segments.
type walVFS struct {
	*walfs.FS
}

func newWALVFS() walVFS { return walVFS{walfs.New()} }

// Create creates a segment file as raft-wal's file system does (its size
// preallocated, its directory synced with the first fsync) and fills it
// with zeros ahead of the writes.
func (v walVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.FS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	z := &zeroFilled{WritableFile: f, size: int64(size), fd: -1}
	if fdf, ok := f.(interface{ Fd() uintptr }); ok {
		z.fd = int(fdf.Fd())
	}
	return z, nil
}

// zeroFilled is a new segment file kept zero-filled past its writes.
type zeroFilled struct {
	types.WritableFile
	size int64
	fd   int // -1: unknown, Sync always fsyncs

	synced atomic.Bool // the first Sync (fsync, then the directory) is done

	mu     sync.Mutex
	end    int64 // end of the furthest write
	zeroed int64 // zeros are written up to here (from end)
	failed bool  // a zero fill failed: no more (the log is not affected)
}

var zeros = make([]byte, zeroAhead)

// WriteAt writes p at off, then, when the zeros ahead of the writes run
// short, writes the next zeroAhead bytes of zeros past the furthest write.
func (z *zeroFilled) WriteAt(p []byte, off int64) (int, error) {
	n, err := z.WritableFile.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.end = max(z.end, off+int64(n))
	if z.failed || z.zeroed-z.end >= zeroAhead/2 || z.zeroed >= z.size {
		return n, nil
	}
	from := max(z.zeroed, z.end)
	to := min(from+zeroAhead, z.size)
	if from < to {
		if _, zerr := z.WritableFile.WriteAt(zeros[:to-from], from); zerr != nil {
			// Only an optimisation: the segment stays preallocated.
			z.failed = true
			return n, nil
		}
	}
	z.zeroed = to
	return n, nil
}

// Sync makes every write before it durable. The first call is raft-wal's
// own (fsync of the file, then of its directory, which makes the new file
// itself durable); later calls are fdatasync. The file's blocks ahead of
// the log are already written (the zeros), so an append changes no
// metadata a read of the data needs, and fdatasync flushes the data alone
// where fsync would also commit the file system's journal for the new
// modification time, taking with it whatever metadata other files (the
// filer's state file) changed meanwhile. Should an append still reach past
// the zeros (a failed fill), fdatasync commits the extent change as fsync
// would: it skips only what reading the data back does not need.
func (z *zeroFilled) Sync() error {
	if z.fd < 0 || !z.synced.Load() {
		if err := z.WritableFile.Sync(); err != nil {
			return err
		}
		z.synced.Store(true)
		return nil
	}
	return vfs.Fdatasync(z.fd)
}
