package shell

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cairn-storage/cairn/filer"
)

// newTable returns a tab-separated table writer; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// humanBytes formats a byte count with a binary unit ("1.5 GiB").
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseSize parses a byte count: a plain number or one with a unit
// (K, M, G, T, P with optional "i"/"iB"/"B"; all binary, 1K = 1024).
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	mult := uint64(1)
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGTP", u[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseUint(strings.TrimSpace(u), 10, 64)
	if err != nil || (mult > 1 && v > (1<<64-1)/mult) {
		return 0, fmt.Errorf("%q is not a size; give bytes like 1048576, 512M or 10GiB", s)
	}
	return v * mult, nil
}

// modeString renders an inode mode like ls -l ("drwxr-xr-x").
func modeString(mode uint32) string {
	m := os.FileMode(mode & 0o777)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		m |= os.ModeDir
	case syscall.S_IFLNK:
		m |= os.ModeSymlink
	case syscall.S_IFIFO:
		m |= os.ModeNamedPipe
	case syscall.S_IFSOCK:
		m |= os.ModeSocket
	case syscall.S_IFCHR:
		m |= os.ModeDevice | os.ModeCharDevice
	case syscall.S_IFBLK:
		m |= os.ModeDevice
	}
	if mode&syscall.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	s := m.String()
	if mode&syscall.S_IFMT == syscall.S_IFLNK {
		s = "l" + s[1:]
	}
	return s
}

// typeName names the type of an inode mode.
func typeName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// formatTime renders ns since the epoch in local time.
func formatTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).Format("2006-01-02 15:04:05")
}

// cleanPath makes an operator's path absolute and clean ("a/b/" -> "/a/b").
func cleanPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path; give an absolute path like /data/file")
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	c := path.Clean(p)
	if _, err := filer.CleanPath(c); err != nil {
		return "", err
	}
	return c, nil
}

// fsError describes a failed filesystem operation for the operator.
func fsError(cmd, p string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s %s: %s", cmd, p, rpcMessage(err))
	}
	hint := ""
	switch errno {
	case syscall.ENOENT:
		hint = "; check the path with fs.ls " + path.Dir(p)
	case syscall.ENOTDIR:
		hint = "; a component of the path is not a directory"
	case syscall.ENOTEMPTY:
		hint = "; remove its contents first, or use fs.rm -r"
	case syscall.EEXIST:
		hint = "; choose another name or remove the existing entry first"
	case syscall.EDQUOT:
		hint = "; raise the quota with quota.set or free space under its quota root"
	case syscall.EROFS:
		hint = "; it belongs to a snapshot, which is read-only (clone it to change it)"
	case syscall.EINVAL:
		hint = "; the operation is not valid here (for example moving a directory into itself)"
	case syscall.EISDIR:
		hint = "; it is a directory"
	}
	return fmt.Errorf("%s %s: %w%s", cmd, p, errno, hint)
}

// jsonLine writes v as one line of JSON.
func jsonLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
