package csi

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cairn-storage/cairn/internal/mountinfo"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	mountinfo.Entry
}

func (m mountEntry) readOnly() bool {
	for _, o := range strings.Split(m.Opts, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// readMounts reads the mount table of /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	es, err := mountinfo.Read()
	if err != nil {
		return nil, fmt.Errorf("csi: %w", err)
	}
	return mountEntries(es), nil
}

func mountEntries(es []mountinfo.Entry) []mountEntry {
	out := make([]mountEntry, len(es))
	for i, e := range es {
		out[i] = mountEntry{e}
	}
	return out
}

// mountAt returns the topmost mount at path, nil if path is no mount point.
func mountAt(ms []mountEntry, path string) *mountEntry {
	path = filepath.Clean(path)
	var top *mountEntry
	for i := range ms {
		if ms[i].Point == path {
			top = &ms[i]
		}
	}
	return top
}
