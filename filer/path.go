package filer

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// MaxNameLen is the longest directory entry name in bytes, as on Linux.
const MaxNameLen = 255

// MaxPathLen is the longest absolute path CleanPath accepts, as PATH_MAX.
const MaxPathLen = 4096

// ErrBadPath is wrapped by every CleanPath error.
var ErrBadPath = errors.New("filer: invalid path")

// ValidateName checks one directory entry name. It is the only place names
// are checked: EINVAL for "", ".", "..", a name containing '/' or NUL;
// ENAMETOOLONG for more than MaxNameLen bytes; 0 when the name is valid.
func ValidateName(name string) syscall.Errno {
	switch {
	case name == "" || name == "." || name == "..":
		return syscall.EINVAL
	case len(name) > MaxNameLen:
		return syscall.ENAMETOOLONG
	case strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	}
	return 0
}

// CleanPath checks an absolute path sent by a client and returns it in
// canonical form: a leading "/", components separated by one "/", no trailing
// "/" (except for the root "/"). It rejects relative paths, "." and ".."
// components, empty components in the middle ("a//b"), NUL bytes, names over
// MaxNameLen and paths over MaxPathLen. A single trailing "/" is allowed.
func CleanPath(p string) (string, error) {
	if len(p) > MaxPathLen {
		return "", fmt.Errorf("%w: %d bytes is longer than %d", ErrBadPath, len(p), MaxPathLen)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w %q: not absolute", ErrBadPath, p)
	}
	if p == "/" {
		return p, nil
	}
	rest := strings.TrimSuffix(p[1:], "/")
	if rest == "" {
		return "", fmt.Errorf("%w %q: empty component", ErrBadPath, p)
	}
	for c := range strings.SplitSeq(rest, "/") {
		switch ValidateName(c) {
		case 0:
		case syscall.ENAMETOOLONG:
			return "", fmt.Errorf("%w %q: component longer than %d bytes", ErrBadPath, p, MaxNameLen)
		default:
			return "", fmt.Errorf("%w %q: component %q is not allowed", ErrBadPath, p, c)
		}
	}
	return "/" + rest, nil
}

// splitPath returns the components of a path cleaned by CleanPath.
func splitPath(clean string) []string {
	if clean == "/" {
		return nil
	}
	return strings.Split(clean[1:], "/")
}
