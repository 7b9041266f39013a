package filer

import (
	"strings"
	"syscall"
	"testing"
)

func TestValidateName(t *testing.T) {
	for name, want := range map[string]syscall.Errno{
		"a": 0, "": syscall.EINVAL, ".": syscall.EINVAL, "..": syscall.EINVAL, "...": 0, "a/b": syscall.EINVAL,
		"a\x00": syscall.EINVAL, strings.Repeat("x", 255): 0, strings.Repeat("x", 256): syscall.ENAMETOOLONG,
	} {
		if got := ValidateName(name); got != want {
			t.Errorf("ValidateName(%.20q) = %v, want %v", name, got, want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "/a": "/a", "/a/b/": "/a/b", "/a/...": "/a/..."} {
		if got, err := CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "//", "/a//b", "/a/../b", "/./a", "/a\x00", "/" + strings.Repeat("x", 256), "/" + strings.Repeat("x/", 2100)} {
		if got, err := CleanPath(in); err == nil {
			t.Errorf("CleanPath(%.30q) = %q, want an error", in, got)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a//b", "/../x", "/a/", "a", "/a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := CleanPath(p)
		if err != nil {
			return
		}
		if c2, err := CleanPath(c); err != nil || c2 != c {
			t.Fatalf("CleanPath(%q) = %q, not a fixed point: %q %v", p, c, c2, err)
		}
		if len(c) > MaxPathLen || !strings.HasPrefix(c, "/") || strings.Contains(c, "//") || strings.Contains(c, "\x00") {
			t.Fatalf("CleanPath(%q) = %q", p, c)
		}
		for _, part := range splitPath(c) {
			if ValidateName(part) != 0 {
				t.Fatalf("CleanPath(%q) kept component %q", p, part)
			}
		}
	})
}
