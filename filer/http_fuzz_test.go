package filer

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzHTTPPathInRoot: whatever request target a client sends, the path the
// HTTP API acts on (after URL decoding, CleanPath and mapping into the API
// root) is the root or below it, and maps back to what the client named.
func FuzzHTTPPathInRoot(f *testing.F) {
	for _, s := range []string{
		"/a.txt", "/../x", "/%2e%2e/x", "/x/%2E%2E/%2e%2e/y", "//x", "/x//y", "/a%00b", "/..%2fx",
		"/%252e%252e", `/..\x`, "/a/b/", "/", "/sub", "/subway", "/?mv.from=/../x",
	} {
		f.Add(s, "/sub")
		f.Add(s, "/")
	}
	f.Fuzz(func(t *testing.T, target, root string) {
		root, err := CleanPath(root)
		if err != nil {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		seen, err := CleanPath(u.Path)
		if err != nil {
			return
		}
		s := &Server{cfg: Config{HTTPRoot: root}}
		p := s.inRoot(seen)
		if root != "/" && p != root && !strings.HasPrefix(p, root+"/") {
			t.Fatalf("target %q under root %q acts on %q, outside the root", target, root, p)
		}
		for _, part := range splitPath(p) {
			if ValidateName(part) != 0 {
				t.Fatalf("target %q under root %q acts on %q with component %q", target, root, p, part)
			}
		}
		if back := s.shown(p); back != seen {
			t.Fatalf("target %q under root %q: acts on %q, shown as %q, want %q", target, root, p, back, seen)
		}
	})
}

// FuzzUploadBody: any Content-Type and body give either an error or a
// reader of at most the body's bytes; nothing panics.
func FuzzUploadBody(f *testing.F) {
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "a.txt")
	fw.Write([]byte("content"))
	mw.Close()
	f.Add(mw.FormDataContentType(), form.Bytes())
	f.Add("application/octet-stream", []byte("raw"))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--x--\r\n"))
	f.Add("multipart/form-data", []byte("--\r\n"))
	f.Add("multipart/mixed; boundary=\"", []byte{})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r, _ := http.NewRequest(http.MethodPut, "/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		rd, _, err := uploadBody(r)
		if err != nil {
			return
		}
		got, err := io.ReadAll(io.LimitReader(rd, int64(len(body))+1))
		if err != nil {
			return
		}
		if len(got) > len(body) {
			t.Fatalf("upload of %d bytes read as %d", len(body), len(got))
		}
	})
}
