package raftutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/segment"
)

// The two on-disk forms of a member's Raft log and stable store (term,
// vote), in Config.Dir.
const (
	// walDir holds a hashicorp/raft-wal log: append-only segment files, one
	// fsync per appended batch, and wal-meta.db (bbolt) for the segment list
	// and the stable store. Every new data directory uses it.
	walDir = "wal"
	// boltFile is the raft-boltdb store that data directories created
	// before the WAL hold. It keeps working there: see openLogStore.
	boltFile = "raft.db"
)

// Log store kinds, as Node.LogStore reports them.
const (
	LogStoreWAL  = "wal"
	LogStoreBolt = "boltdb"
)

// logStore is what raft needs from the log and stable store, plus Close.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// openLogStore opens the member's log store in dir: raft.db if the
// directory already has one, else the WAL (created if needed).
//
// A raft.db is never converted. It holds the only copy of the member's
// acknowledged log and its vote; copying it into a WAL would need a
// switch-over that is atomic across a crash at any point, for a speed-up
// the member also gets by rejoining with an empty directory (it catches up
// from the leader's snapshot). A directory with both is refused: the
// member cannot know which log is its own.
func openLogStore(dir string, hcl hclog.Logger) (logStore, string, error) {
	boltPath := filepath.Join(dir, boltFile)
	walPath := filepath.Join(dir, walDir)
	_, berr := os.Stat(boltPath)
	hasBolt := berr == nil
	if berr != nil && !errors.Is(berr, os.ErrNotExist) {
		return nil, "", fmt.Errorf("raftutil: look for raft log %s: %w", boltPath, berr)
	}
	hasWAL, err := nonEmptyDir(walPath)
	if err != nil {
		return nil, "", fmt.Errorf("raftutil: look for raft log %s: %w", walPath, err)
	}
	switch {
	case hasBolt && hasWAL:
		return nil, "", fmt.Errorf("%w: %s holds two raft logs, %s and %s/; keep the one this member wrote last and move the other away",
			ErrConfig, dir, boltFile, walDir)
	case hasBolt:
		store, err := raftboltdb.NewBoltStore(boltPath)
		if err != nil {
			return nil, "", fmt.Errorf("raftutil: open raft log %s: %w", boltPath, err)
		}
		return store, LogStoreBolt, nil
	}
	if err := os.MkdirAll(walPath, 0o755); err != nil {
		return nil, "", fmt.Errorf("raftutil: create raft log directory %s: %w", walPath, err)
	}
	// The WAL fsyncs its own directory; this makes the directory's name in
	// dir durable too.
	if err := syncDir(dir); err != nil {
		return nil, "", fmt.Errorf("raftutil: sync %s: %w", dir, err)
	}
	// raft-wal v0.4.1 and later: earlier versions could not read a log
	// again after raft deleted its tail (a follower dropping entries a new
	// leader replaced), see TestWALTailTruncateThenReopen.
	w, err := wal.Open(walPath, wal.WithLogger(hcl.Named("wal")), wal.WithSegmentFiler(segment.NewFiler(walPath, newWALVFS())))
	if err != nil {
		return nil, "", fmt.Errorf("raftutil: open raft log %s: %w", walPath, err)
	}
	return w, LogStoreWAL, nil
}

// nonEmptyDir reports whether path is a directory with at least one entry.
func nonEmptyDir(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	return len(names) > 0, err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
