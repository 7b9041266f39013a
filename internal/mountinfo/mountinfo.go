// Package mountinfo parses the mount table of /proc/self/mountinfo.
package mountinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Path is the mount table of the calling process.
const Path = "/proc/self/mountinfo"

// Entry is one line of a mountinfo file (see proc(5)).
type Entry struct {
	Dev    string // major:minor of the mounted file system (field 3)
	Root   string // the path inside the file system that is mounted (field 4)
	Point  string // the mount point (field 5)
	Opts   string // per-mount options: ro, rw, nosuid, ... (field 6)
	FSType string // the file system type, after the "-" separator
	Source string // the mount source, after the file system type
}

// Read reads and parses /proc/self/mountinfo.
func Read() ([]Entry, error) {
	b, err := os.ReadFile(Path)
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	return Parse(b), nil
}

// Parse parses the lines of a mountinfo file. Lines that lack the "-"
// separator or the fields after it are skipped. The octal escapes of
// paths (\040 for a space, ...) are undone.
func Parse(b []byte) []Entry {
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			continue
		}
		out = append(out, Entry{
			Dev:    f[2],
			Root:   unescape(f[3]),
			Point:  unescape(f[4]),
			Opts:   f[5],
			FSType: f[sep+1],
			Source: unescape(f[sep+2]),
		})
	}
	return out
}

// unescape undoes the octal escapes (\040 for a space, \011 for a tab,
// \012 for a newline, \134 for a backslash) of a mountinfo field.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// octal3 decodes three octal digits that make one byte.
func octal3(s string) (byte, bool) {
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), len(s) == 3 && v < 256
}
