package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-storage/cairn/internal/vfs"
)

// Store is a directory of volumes. Its methods are safe for concurrent use.
type Store struct {
	fs    vfs.FS
	dir   string
	log   *slog.Logger
	cache *needleCache // verified needles of every volume

	mu struct {
		sync.Mutex // guards vols and closed; never held during volume IO except Allocate's open
		vols       map[uint32]*Volume
		copying    map[uint32]bool // volumes CopyIn is writing
		closed     bool
	}
}

// OpenStore opens every volume file in dir, creating dir if needed. Leftover
// temporary files of interrupted creates and vacuums are removed. If any
// volume file cannot be opened, OpenStore fails with an error naming the file
// (nothing is skipped silently); files that are not volume files are logged
// and left alone.
func OpenStore(fsys vfs.FS, dir string) (*Store, error) {
	s := &Store{fs: fsys, dir: dir, log: slog.Default().With("dir", dir), cache: newNeedleCache(DefaultCacheBytes)}
	s.mu.vols = make(map[uint32]*Volume)
	s.mu.copying = make(map[uint32]bool)
	if err := mkdirAllDurable(fsys, dir); err != nil {
		return nil, err
	}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("volume: list store directory %s: %w", dir, err)
	}
	bases := make(map[string]bool)
	for _, name := range names {
		if base, ok := strings.CutSuffix(name, extData); ok {
			bases[base] = true
		}
	}
	for _, name := range names {
		ext := filepath.Ext(name)
		base := strings.TrimSuffix(name, ext)
		switch {
		case ext == extData:
			if err := s.openFile(name, base); err != nil {
				s.closeAll()
				return nil, err
			}
		case (ext == extCompact || ext == extTemp) && !bases[base]:
			// Volume files handle their own leftovers; these have no volume.
			p := filepath.Join(dir, name)
			if err := fsys.Remove(p); err != nil {
				s.closeAll()
				return nil, fmt.Errorf("volume: remove leftover %s: %w", p, err)
			}
			s.log.Warn("removed leftover file of an interrupted volume create or vacuum", "file", p)
			if err := fsys.SyncDir(dir); err != nil {
				s.closeAll()
				return nil, fmt.Errorf("volume: sync directory %s: %w", dir, err)
			}
		case ext == extCompact || ext == extTemp:
		default:
			s.log.Warn("ignoring a file that is not a volume file in the store directory", "file", filepath.Join(dir, name))
		}
	}
	return s, nil
}

// mkdirAllDurable creates dir and its missing parents and syncs the parent
// of each created directory, so the directory survives a crash.
func mkdirAllDurable(fsys vfs.FS, dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		_, err := fsys.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("volume: store directory %s: %w", d, err)
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("volume: create store directory %s: %w", dir, err)
	}
	for _, d := range created {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("volume: sync directory %s: %w", filepath.Dir(d), err)
		}
	}
	return nil
}

func (s *Store) openFile(name, base string) error {
	p := filepath.Join(s.dir, name)
	coll, id, ok := parseFileBase(base)
	if !ok {
		return fmt.Errorf("volume: %s is not named like a volume file (<collection>_<id>.dat or <id>.dat); rename or move it out of %s: %w", p, s.dir, ErrInvalid)
	}
	if other, dup := s.mu.vols[id]; dup {
		return fmt.Errorf("volume: %s and %s both hold volume %d; move one of them out of %s: %w", p, other.path(extData), id, s.dir, ErrInvalid)
	}
	v, err := openVolume(s.fs, s.dir, superblock{id: id, collection: coll}, false)
	if err != nil {
		return fmt.Errorf("volume: cannot open volume file %s: %w; restore it from a replica or move it out of %s, then restart", p, err, s.dir)
	}
	v.setCache(s.cache)
	s.mu.vols[id] = v
	return nil
}

func (s *Store) closeAll() {
	for _, v := range s.mu.vols {
		v.Close()
	}
}

// Allocate creates volume id, or returns it if it exists with the same
// collection and replication (idempotent). It fails with ErrInvalid if the
// volume exists with another collection or replication.
func (s *Store) Allocate(id uint32, collection, replication string) (*Volume, error) {
	repl, err := normReplication(replication)
	if err != nil {
		return nil, err
	}
	if err := ValidCollection(collection); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, fmt.Errorf("volume: allocate %d: store %w", id, ErrClosed)
	}
	if s.mu.copying[id] {
		return nil, fmt.Errorf("volume: allocate %d: it is being copied to this server: %w", id, ErrExists)
	}
	if v, ok := s.mu.vols[id]; ok {
		if v.sb.collection != collection || v.sb.replication != repl {
			return nil, fmt.Errorf("volume: allocate %d collection %q replication %s: it exists with collection %q replication %s: %w",
				id, collection, repl, v.sb.collection, v.sb.replication, ErrInvalid)
		}
		return v, nil
	}
	v, err := OpenVolume(s.fs, s.dir, id, collection, repl)
	if err != nil {
		return nil, err
	}
	v.setCache(s.cache)
	s.mu.vols[id] = v
	return v, nil
}

// Get returns volume id.
func (s *Store) Get(id uint32) (*Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.mu.vols[id]
	return v, ok
}

// Volumes returns the volumes sorted by id.
func (s *Store) Volumes() []*Volume {
	s.mu.Lock()
	out := make([]*Volume, 0, len(s.mu.vols))
	for _, v := range s.mu.vols {
		out = append(out, v)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Volume) int {
		if a.sb.id < b.sb.id {
			return -1
		}
		return 1
	})
	return out
}

// Delete destroys volume id and removes its file, durably. ErrNotFound if
// there is no such volume.
func (s *Store) Delete(id uint32) error {
	s.mu.Lock()
	v, ok := s.mu.vols[id]
	delete(s.mu.vols, id)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("volume: delete volume %d: %w", id, ErrNotFound)
	}
	s.cache.dropVolume(v)
	return v.Destroy()
}

// FreeBytes returns the free space of the store's filesystem.
func (s *Store) FreeBytes() (uint64, error) {
	n, err := s.fs.FreeBytes(s.dir)
	if err != nil {
		return 0, fmt.Errorf("volume: free space of %s: %w", s.dir, err)
	}
	return n, nil
}

// Close closes every volume. The store is unusable afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	vols := s.mu.vols
	s.mu.vols = map[uint32]*Volume{}
	s.mu.closed = true
	s.mu.Unlock()
	var errs []error
	for _, v := range vols {
		errs = append(errs, v.Close())
	}
	return errors.Join(errs...)
}
