package mountsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFile is the on-disk record of the mounts a service hosts: a JSON
// list of Mount, replaced atomically (write a temporary file in the same
// directory, fsync it, rename it over the old one, fsync the directory), so
// a crash at any moment leaves either the old or the new list.
type stateFile struct {
	path string // "" disables persistence
}

type stateDoc struct {
	Version int     `json:"version"`
	Mounts  []Mount `json:"mounts"`
}

// load returns the recorded mounts; a missing file is an empty list.
func (s stateFile) load() ([]Mount, error) {
	if s.path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mountsvc: read state file: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("mountsvc: state file %s is not valid JSON (move it away to start without restoring mounts): %w", s.path, err)
	}
	return doc.Mounts, nil
}

// save replaces the recorded mounts with ms, durably.
func (s stateFile) save(ms []Mount) error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(stateDoc{Version: 1, Mounts: ms}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mountsvc: state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("mountsvc: write state file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mountsvc: write state file %s: %w", s.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mountsvc: sync state directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mountsvc: sync state directory %s: %w", dir, err)
	}
	return nil
}
