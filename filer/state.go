package filer

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. Keys of 8 bytes are big-endian inode or snapshot numbers.
var (
	bucketInodes    = []byte("inodes")    // ino -> JSON Inode
	bucketDentries  = []byte("dentries")  // parent ino + name -> child ino
	bucketXattrs    = []byte("xattrs")    // ino + name -> value
	bucketRefs      = []byte("refs")      // fid -> uint64 count (> 0)
	bucketDeleteQ   = []byte("deleteq")   // fid -> empty: count 0, needle to delete
	bucketQuotas    = []byte("quotas")    // quota root ino -> JSON Quota
	bucketSessions  = []byte("sessions")  // client id -> JSON session
	bucketSnapshots = []byte("snapshots") // snapshot id -> JSON SnapshotInfo
	bucketOrphans   = []byte("orphans")   // ino -> empty: unlinked, kept while open
	bucketUploads   = []byte("uploads")   // fid -> uint64 expiry ns: needle being uploaded, not yet referenced
	bucketSlices    = []byte("slices")    // ino + file offset -> piece of a regular file (slicestore.go)
	bucketMeta      = []byte("meta")      // keys below

	allBuckets = [][]byte{bucketInodes, bucketDentries, bucketXattrs, bucketRefs, bucketDeleteQ,
		bucketQuotas, bucketSessions, bucketSnapshots, bucketOrphans, bucketUploads, bucketSlices, bucketInline, bucketMeta}

	metaNextIno    = []byte("next_ino")
	metaNextSnap   = []byte("next_snapshot")
	metaApplyIndex = []byte("apply_index")
	metaFormat     = []byte("format")
	formatVersion  = []byte("cairn-filer-3")
	// formatNoInline is the format before the inline bucket (inline.go).
	// Restore adds the empty bucket.
	formatNoInline = []byte("cairn-filer-2")
	// formatEmbedded is the format before the slices bucket: a regular
	// file's slice list was stored inside its inode. Restore migrates it.
	formatEmbedded  = []byte("cairn-filer-1")
	errNotFilerFile = errors.New("filer: not a filer state file")
)

// Result is the outcome of applying a Command. Errno 0 is success; any
// other Errno means the command changed nothing.
type Result struct {
	Errno syscall.Errno `json:"errno,omitempty"`
	// Inode is the inode created or changed (Mkdir, Create, Symlink, Link,
	// Rename (the moved inode), SetAttr, CommitSlices, PunchHole,
	// Fallocate, ReplaceSlices, SetXattr, RemoveXattr, Clone).
	Inode *Inode `json:"inode,omitempty"`
	// Snapshot is set by Snapshot.
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
	// Created is set by a Create that made a new file (not one that found
	// the name taken): the file has no xattrs and no data.
	Created bool `json:"created,omitempty"`
	// Fids are the fids a CommitSlices gave its inline slices (those
	// with Data), in their order.
	Fids []string `json:"fids,omitempty"`
}

func errnoResult(e syscall.Errno) *Result { return &Result{Errno: e} }

// session is the at-most-once record of one client.
type session struct {
	Seq    uint64  `json:"seq"`
	Result *Result `json:"result"`
	Time   int64   `json:"time,omitempty"` // command time of the last use, ns
}

// State is the namespace state machine on a bbolt file. Apply must be
// called from one goroutine at a time (raft's FSM goroutine); the read
// methods may be called concurrently with it and with each other and see a
// consistent state. The file is a cache: OpenState recreates it empty and
// the caller rebuilds it from the Raft snapshot and log, so it is opened
// without fsync, and applied commands are committed to it in batches.
type State struct {
	path string
	mu   sync.RWMutex // guards db: held for reading by every use, for writing by Restore and Close
	db   *bolt.DB

	// wmu guards the write transaction Apply leaves open (state_batch.go)
	// and w. Lock order: mu, then wmu.
	wmu sync.Mutex
	w   *batch // the open batch; nil when none
	// broken is set, under wmu, once a failed commit or apply left the
	// state without commands already answered; read without wmu.
	broken atomic.Pointer[error]
	// pending is set while w holds applied commands no reader sees yet.
	pending atomic.Bool
	// applied is the index of the last log entry applied, committed or not.
	applied atomic.Uint64
}

// OpenState creates an empty state at path, replacing any file there.
func OpenState(path string) (*State, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("filer: remove stale state %s: %w", path, err)
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s := &State{path: path, db: db}
	if err := db.Update(initBuckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("filer: initialize state %s: %w", path, err)
	}
	if err := db.Update(countInline); err != nil {
		db.Close()
		return nil, fmt.Errorf("filer: count inline data in state %s: %w", path, err)
	}
	return s, nil
}

// openDB opens the state file as the cache of the Raft log it is: never
// synced, not even when bbolt grows the file (NoGrowSync; a grow's fsync
// would also commit the file system's journal in the middle of a commit).
func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoGrowSync: true, NoFreelistSync: true, InitialMmapSize: 64 << 20})
	if err != nil {
		return nil, fmt.Errorf("filer: open state %s: %w", path, err)
	}
	return db, nil
}

// initBuckets creates the buckets and the root directory (deterministic:
// owned by root, mode 0755, times 0).
func initBuckets(tx *bolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaFormat) != nil {
		return nil
	}
	root := &Inode{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Parent: RootIno, QuotaRoot: RootIno, Generation: 1}
	q, _ := json.Marshal(Quota{Inodes: 1}) // the root counts itself
	for _, kv := range [][3][]byte{
		{bucketMeta, metaFormat, formatVersion},
		{bucketMeta, metaNextIno, u64key(RootIno + 1)},
		{bucketMeta, metaNextSnap, u64key(1)},
		{bucketInodes, u64key(RootIno), encodeInode(root)},
		{bucketQuotas, u64key(RootIno), q},
	} {
		if err := tx.Bucket(kv[0]).Put(kv[1], kv[2]); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the state file.
func (s *State) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wmu.Lock()
	s.rollbackLocked() // a cache of the log: nothing pending needs keeping
	s.wmu.Unlock()
	return s.db.Close()
}

// view runs fn in a read transaction that sees every command applied
// before the call.
func (s *State) view(fn func(t *txn) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return catch(func() error { return fn(newTxn(tx, 0)) })
	})
}

// Apply applies c as the log entry at index (0: not from a log; the apply
// index is then left alone). The error is an IO error of the state file,
// after which the state must not be trusted; a command the namespace
// refuses is a Result with an Errno. The changes may stay in a write
// transaction shared with the next commands (state_batch.go); every read
// method commits them first, so it sees all commands applied before it.
func (s *State) Apply(index uint64, c *Command) (*Result, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	res, err := s.applyBatched(index, c)
	if err != nil {
		return nil, fmt.Errorf("filer: apply %s at index %d: %w", c.Op.OpType(), index, err)
	}
	return res, nil
}

// ApplyIndex returns the index of the last log entry applied.
func (s *State) ApplyIndex() uint64 { return s.applied.Load() }

// loadApplyIndex sets the in-memory apply index from the state file (just
// opened or restored). s.mu is held.
func (s *State) loadApplyIndex() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return catch(func() error {
			s.applied.Store(newTxn(tx, 0).metaU64(metaApplyIndex))
			return nil
		})
	})
}

// WriteTo writes a consistent copy of the state file to w.
func (s *State) WriteTo(w io.Writer) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.flushLocked(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Restore replaces the state with the state file read from r (as written
// by WriteTo, by this version or, in an earlier format, an earlier one,
// which is converted first). A file that is not a filer state, or fails to
// convert, leaves the state as it was.
func (s *State) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("filer: restore: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkStateFile(tmp)
	}
	if err == nil {
		err = convertStateFile(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("filer: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wmu.Lock()
	s.rollbackLocked() // replaced by the snapshot
	s.broken.Store(nil)
	s.wmu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("filer: restore: close old state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("filer: restore: %w", err)
	}
	db, err := openDB(s.path)
	if err != nil {
		return err
	}
	s.db = db
	if err := db.Update(countInline); err != nil {
		return fmt.Errorf("filer: restore: count inline data: %w", err)
	}
	return s.loadApplyIndex()
}

func checkStateFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: bucket %s missing", errNotFilerFile, bucketMeta)
		}
		format := meta.Get(metaFormat)
		embedded := bytes.Equal(format, formatEmbedded)
		noInline := embedded || bytes.Equal(format, formatNoInline)
		if !noInline && !bytes.Equal(format, formatVersion) {
			return fmt.Errorf("%w: format %q, want %q, %q or %q", errNotFilerFile, format, formatVersion, formatNoInline, formatEmbedded)
		}
		for _, b := range allBuckets {
			missingOK := embedded && bytes.Equal(b, bucketSlices) || noInline && bytes.Equal(b, bucketInline)
			if tx.Bucket(b) == nil && !missingOK {
				return fmt.Errorf("%w: bucket %s missing", errNotFilerFile, b)
			}
		}
		return nil
	})
}

// Dump writes every key and value of the state in a canonical text form:
// two states are identical iff their dumps are.
func (s *State) Dump(w io.Writer) error {
	return s.view(func(t *txn) error {
		for _, name := range allBuckets {
			if err := t.tx.Bucket(name).ForEach(func(k, v []byte) error {
				_, err := fmt.Fprintf(w, "%s %s %s\n", name, hex.EncodeToString(k), hex.EncodeToString(v))
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// replay returns the stored result of a repeated command, ESTALE for a
// command older than the client's last one, or nil to apply it.
func (t *txn) replay(c *Command) *Result {
	if c.ClientID == "" || c.Seq == 0 {
		return nil
	}
	v := t.sessions.Get([]byte(c.ClientID))
	if v == nil {
		return nil
	}
	if seq, ok := sessionSeq(v); ok && c.Seq > seq {
		return nil // the usual case: the client's next command
	}
	var s session
	t.must(json.Unmarshal(v, &s))
	switch {
	case c.Seq == s.Seq:
		if s.Result != nil && s.Result.Inode != nil {
			// Sessions keep only the inode number (a file's slice list can
			// be long); the answer carries the inode as it is now.
			if in := t.inode(s.Result.Inode.Ino); in != nil {
				if cs, ok := c.Op.(*CommitSlices); !ok || !cs.OmitSlices {
					in = t.withSlices(in)
				}
				s.Result.Inode = in
			}
		}
		return s.Result
	case c.Seq < s.Seq:
		return errnoResult(syscall.ESTALE)
	}
	return nil
}

// sessionSeq reads the Seq of an encoded session without decoding the
// rest: json.Marshal writes it first. ok is false for any other shape.
func sessionSeq(v []byte) (seq uint64, ok bool) {
	rest, found := bytes.CutPrefix(v, []byte(`{"seq":`))
	if !found {
		return 0, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i == len(rest) || rest[i] != ',' && rest[i] != '}' {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	return seq, err == nil
}

// finish records the client's session and the apply index.
func (t *txn) finish(index uint64, c *Command, res *Result) {
	if c.ClientID != "" && c.Seq != 0 {
		kept := res
		if res != nil && res.Inode != nil {
			r := *res
			r.Inode = &Inode{Ino: res.Inode.Ino}
			kept = &r
		}
		b, err := json.Marshal(session{Seq: c.Seq, Result: kept, Time: c.Time})
		t.must(err)
		t.must(t.sessions.Put([]byte(c.ClientID), b))
	}
	t.setApplyIndex(index)
}

func (t *txn) setApplyIndex(index uint64) {
	if index != 0 {
		t.must(t.meta.Put(metaApplyIndex, u64key(index)))
	}
}

func (s *State) setApplyIndex(index uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.applyBatched(index, nil)
	return err
}
