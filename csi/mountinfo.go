package csi

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Dev    string // major:minor of the mounted file system
	Root   string // the path inside the file system that is mounted
	Point  string // the mount point
	Opts   string // per-mount options (ro, rw, ...)
	FSType string
	Source string
}

func (m mountEntry) readOnly() bool {
	for _, o := range strings.Split(m.Opts, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// readMounts parses /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("csi: read /proc/self/mountinfo: %w", err)
	}
	return parseMountinfo(b), nil
}

func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, s := range f {
			if s == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			continue
		}
		out = append(out, mountEntry{
			Dev: f[2], Root: unescapeMount(f[3]), Point: unescapeMount(f[4]), Opts: f[5],
			FSType: f[sep+1], Source: unescapeMount(f[sep+2]),
		})
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
