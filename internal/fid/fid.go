// Package fid parses and formats file ids, the names of needles.
//
// A file id is "<volume>,<key><cookie>" as SeaweedFS writes it: the volume id in
// decimal, a comma, the key in hex with leading zero bytes dropped, and the
// cookie as exactly 8 hex digits. An optional "_N" suffix names the N-th id of a
// batch assigned with count>1 (key+N, same cookie).
package fid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("fid: invalid file id")

// FileID names one needle.
type FileID struct {
	Volume uint32
	Key    uint64
	Cookie uint32
}

// InlineVolume is the volume id of data the filer holds itself (small
// writes committed with their bytes): no volume server has it, and the
// master never gives it out (volume ids start at 1).
const InlineVolume uint32 = 0

// Inline reports whether id names data held by the filer, not a needle.
func (id FileID) Inline() bool { return id.Volume == InlineVolume }

// IsInline reports whether s is a file id of data held by the filer.
func IsInline(s string) bool { return strings.HasPrefix(s, "0,") }

// String formats id as SeaweedFS does, e.g. "3,01637037d6".
func (id FileID) String() string {
	return strconv.FormatUint(uint64(id.Volume), 10) + "," + KeyCookie(id.Key, id.Cookie)
}

// KeyCookie formats the part of a file id after the comma.
func KeyCookie(key uint64, cookie uint32) string {
	k := strconv.FormatUint(key, 16)
	if len(k)%2 == 1 {
		k = "0" + k
	}
	return fmt.Sprintf("%s%08x", k, cookie)
}

// Parse parses "<volume>,<key><cookie>[_N]". It accepts a leading "/" and a
// trailing file extension (".jpg"), which HTTP clients add.
func Parse(s string) (FileID, error) {
	orig := s
	s = strings.TrimPrefix(s, "/")
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	comma := strings.IndexByte(s, ',')
	if comma < 0 {
		// SeaweedFS also accepts "<volume>/<keycookie>".
		comma = strings.IndexByte(s, '/')
	}
	if comma <= 0 {
		return FileID{}, fmt.Errorf("%w %q: want <volume>,<key><cookie>", ErrInvalid, orig)
	}
	vol, err := strconv.ParseUint(s[:comma], 10, 32)
	if err != nil {
		return FileID{}, fmt.Errorf("%w %q: volume id is not a number", ErrInvalid, orig)
	}
	rest := s[comma+1:]
	var delta uint64
	if us := strings.IndexByte(rest, '_'); us >= 0 {
		delta, err = strconv.ParseUint(rest[us+1:], 10, 32)
		if err != nil {
			return FileID{}, fmt.Errorf("%w %q: bad _N suffix", ErrInvalid, orig)
		}
		rest = rest[:us]
	}
	if len(rest) <= 8 || len(rest) > 24 {
		return FileID{}, fmt.Errorf("%w %q: key and cookie must be 9 to 24 hex digits", ErrInvalid, orig)
	}
	key, err := strconv.ParseUint(rest[:len(rest)-8], 16, 64)
	if err != nil {
		return FileID{}, fmt.Errorf("%w %q: key is not hex", ErrInvalid, orig)
	}
	cookie, err := strconv.ParseUint(rest[len(rest)-8:], 16, 32)
	if err != nil {
		return FileID{}, fmt.Errorf("%w %q: cookie is not hex", ErrInvalid, orig)
	}
	if key+delta < key {
		return FileID{}, fmt.Errorf("%w %q: key overflows", ErrInvalid, orig)
	}
	return FileID{Volume: uint32(vol), Key: key + delta, Cookie: uint32(cookie)}, nil
}
