package filer

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
)

// Modes of the namespace HTTP API (Config.HTTPAPI).
const (
	HTTPAPIReadWrite = "read-write"
	HTTPAPIReadOnly  = "read-only"
	HTTPAPIOff       = "off"
)

// checkHTTPAPI validates and defaults the HTTP API settings.
func (c *Config) checkHTTPAPI() error {
	switch c.HTTPAPI {
	case "":
		c.HTTPAPI = HTTPAPIReadWrite
	case HTTPAPIReadWrite, HTTPAPIReadOnly, HTTPAPIOff:
	default:
		return fmt.Errorf("filer: HTTP API mode %q: want %s, %s or %s", c.HTTPAPI, HTTPAPIReadWrite, HTTPAPIReadOnly, HTTPAPIOff)
	}
	if c.HTTPRoot == "" {
		c.HTTPRoot = "/"
	}
	root, err := CleanPath(c.HTTPRoot)
	if err != nil {
		return fmt.Errorf("filer: HTTP API root: %w", err)
	}
	c.HTTPRoot = root
	if c.HTTPBind != "" {
		if _, _, err := net.SplitHostPort(c.HTTPBind); err != nil {
			return fmt.Errorf("filer: HTTP API bind address %q is not host:port: %w", c.HTTPBind, err)
		}
	}
	return nil
}

// apiOwnListener reports whether the namespace API has a listener of its
// own rather than sharing the filer address.
func (s *Server) apiOwnListener() bool {
	return s.cfg.HTTPAPI != HTTPAPIOff && s.cfg.HTTPBind != "" && s.cfg.HTTPBind != s.url
}

// httpServers builds the server on the filer address (health, metrics, and
// the namespace API unless it binds elsewhere) and, for an API with its own
// address, opens that listener and returns a loop serving it.
func (s *Server) httpServers() (*http.Server, []func(context.Context), error) {
	// Uploads stream into needles one chunk at a time: no bound on the
	// body, but each holds about two chunks in memory.
	lim := httpx.Limits{MaxBody: -1, BufferedBody: 2 * int64(s.cfg.ChunkSize)}
	hs := httpx.NewServer(s.routes(), s.cfg.Security, lim)
	if !s.apiOwnListener() {
		return hs, nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.HTTPBind)
	if err != nil {
		return nil, nil, fmt.Errorf("filer: listen on %s for the HTTP API: %w", s.cfg.HTTPBind, err)
	}
	api := httpx.NewServer(s.met.instrument(http.HandlerFunc(s.handleFS)), s.cfg.Security, lim)
	s.log.Info("filer HTTP API listening", "addr", ln.Addr().String(), "mode", s.cfg.HTTPAPI, "root", s.cfg.HTTPRoot)
	loop := func(ctx context.Context) {
		if err := httpx.Serve(ctx, api, ln); err != nil {
			s.log.Error("filer HTTP API server failed", "addr", ln.Addr().String(), "err", err)
		}
	}
	return hs, []func(context.Context){loop}, nil
}

// handleMainFS serves namespace paths asked on the filer address: the API
// itself when it shares that address, else only requests a peer filer
// forwarded to this leader (with TLS, only from a certificate named
// "filer").
func (s *Server) handleMainFS(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.cfg.HTTPAPI == HTTPAPIOff:
		httpx.WriteError(w, http.StatusNotFound, "filer: the HTTP API is off on this filer; use a mount or the gRPC API")
	case !s.apiOwnListener() || s.forwardedByPeer(r):
		s.handleFS(w, r)
	default:
		httpx.WriteError(w, http.StatusNotFound, "filer: the HTTP API is served on "+s.cfg.HTTPBind)
	}
}

// forwardedByPeer reports whether r is a request a follower filer proxied.
func (s *Server) forwardedByPeer(r *http.Request) bool {
	if r.Header.Get("X-Cairn-Forwarded") == "" {
		return false
	}
	if s.cfg.Security == nil {
		return true
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	leaf := r.TLS.PeerCertificates[0]
	return leaf.Subject.CommonName == security.RoleFiler || slices.Contains(leaf.DNSNames, security.RoleFiler)
}

// inRoot maps a path as the API's clients see it (cleaned) into the
// namespace.
func (s *Server) inRoot(p string) string {
	switch {
	case s.cfg.HTTPRoot == "/":
		return p
	case p == "/":
		return s.cfg.HTTPRoot
	}
	return s.cfg.HTTPRoot + p
}

// shown maps a namespace path under the API root back to what clients see.
func (s *Server) shown(p string) string {
	if s.cfg.HTTPRoot == "/" {
		return p
	}
	if rest := strings.TrimPrefix(p, s.cfg.HTTPRoot); rest != "" {
		return rest
	}
	return "/"
}

// handleFS serves the SeaweedFS-compatible filer HTTP API on paths. On a
// follower every request is proxied to the leader, so answers are
// linearizable wherever they are asked. Every path is validated once here,
// at the edge, and confined to the configured root.
func (s *Server) handleFS(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.cfg.HTTPAPI == HTTPAPIOff:
		httpx.WriteError(w, http.StatusNotFound, "filer: the HTTP API is off on this filer")
		return
	case s.cfg.HTTPAPI == HTTPAPIReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead:
		httpx.WriteError(w, http.StatusForbidden, "filer: the HTTP API is read-only on this filer")
		return
	}
	if !s.node.IsLeader() {
		s.proxyToLeader(w, r)
		return
	}
	if err := s.ensureLeaderCurrent(r.Context()); err != nil {
		httpx.WriteError(w, http.StatusServiceUnavailable, "filer: leader not ready: "+err.Error())
		return
	}
	seen, err := CleanPath(r.URL.Path)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := s.inRoot(seen)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.httpGet(w, r, p)
	case http.MethodPost, http.MethodPut:
		if from := r.URL.Query().Get("mv.from"); from != "" {
			fromSeen, err := CleanPath(from)
			if err != nil {
				httpx.WriteError(w, http.StatusBadRequest, err.Error())
				return
			}
			if fromSeen == "/" || seen == "/" {
				httpx.WriteError(w, http.StatusBadRequest, "filer: cannot move the root directory")
				return
			}
			s.httpMove(w, r, s.inRoot(fromSeen), p)
			return
		}
		if seen == "/" && !strings.HasSuffix(r.URL.Path, "/") {
			httpx.WriteError(w, http.StatusBadRequest, "filer: cannot write the root directory")
			return
		}
		s.httpPut(w, r, p)
	case http.MethodDelete:
		if seen == "/" {
			httpx.WriteError(w, http.StatusBadRequest, "filer: refusing to delete the root directory")
			return
		}
		s.httpDelete(w, r, p)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE")
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not supported")
	}
}

func (s *Server) proxyToLeader(w http.ResponseWriter, r *http.Request) {
	leader := s.node.LeaderHTTP()
	if leader == "" || r.Header.Get("X-Cairn-Forwarded") != "" {
		httpx.WriteError(w, http.StatusServiceUnavailable, "filer: no leader elected yet; retry in a few seconds")
		return
	}
	target := &url.URL{Scheme: s.data.Scheme, Host: leader}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = s.httpc.Transport
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		httpx.WriteError(w, http.StatusBadGateway, fmt.Sprintf("filer: leader %s unreachable: %v; retry", leader, err))
	}
	r.Header.Set("X-Cairn-Forwarded", s.url)
	rp.ServeHTTP(w, r)
}

// errnoStatus maps a namespace errno to an HTTP status.
func errnoStatus(err error) int {
	var e syscall.Errno
	if !errors.As(err, &e) {
		if errors.Is(err, ErrNoSpace) {
			return http.StatusInsufficientStorage
		}
		return http.StatusInternalServerError
	}
	switch e {
	case syscall.ENOENT:
		return http.StatusNotFound
	case syscall.EEXIST, syscall.ENOTEMPTY:
		return http.StatusConflict
	case syscall.EISDIR, syscall.ENOTDIR, syscall.EINVAL, syscall.ENAMETOOLONG:
		return http.StatusBadRequest
	case syscall.EDQUOT, syscall.ENOSPC:
		return http.StatusInsufficientStorage
	case syscall.EROFS, syscall.EPERM, syscall.EACCES:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func writeErrno(w http.ResponseWriter, what string, err error) {
	httpx.WriteError(w, errnoStatus(err), fmt.Sprintf("filer: %s: %v", what, err))
}

// listEntry is one directory entry in a JSON listing.
type listEntry struct {
	FullPath string    `json:"FullPath"`
	Name     string    `json:"Name"`
	IsDir    bool      `json:"IsDirectory"`
	Mode     uint32    `json:"Mode"`
	Size     uint64    `json:"FileSize"`
	Mtime    time.Time `json:"Mtime"`
	Uid      uint32    `json:"Uid"`
	Gid      uint32    `json:"Gid"`
}

func (s *Server) httpGet(w http.ResponseWriter, r *http.Request, p string) {
	st := s.fsm.State()
	in, err := st.Resolve(p)
	if err != nil {
		writeErrno(w, p, err)
		return
	}
	if in.IsDir() {
		s.httpList(w, r, p, in)
		return
	}
	if in.Type() == syscall.S_IFLNK {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"path": s.shown(p), "symlink": in.Target})
		return
	}
	w.Header().Set("Content-Type", contentType(p))
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, in.Ino, in.Generation))
	rd := &fileReader{ctx: r.Context(), data: s.data, in: in}
	http.ServeContent(w, r, "", time.Unix(0, in.Mtime), io.NewSectionReader(rd, 0, int64(in.Size)))
}

func contentType(p string) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

var listPage = template.Must(template.New("list").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Path}}</title></head>
<body><h1>{{.Path}}</h1>
<table><tr><th>name</th><th>size</th><th>modified</th></tr>
{{if ne .Path "/"}}<tr><td><a href="../">../</a></td><td></td><td></td></tr>{{end}}
{{range .Entries}}<tr><td><a href="{{.Name}}{{if .IsDir}}/{{end}}">{{.Name}}{{if .IsDir}}/{{end}}</a></td><td>{{.Size}}</td><td>{{.Mtime.Format "2006-01-02 15:04:05"}}</td></tr>
{{end}}</table>{{if .More}}<p><a href="?lastFileName={{.Last}}">more</a></p>{{end}}</body></html>
`))

func (s *Server) httpList(w http.ResponseWriter, r *http.Request, p string, dir *Inode) {
	st := s.fsm.State()
	limit := 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		fmt.Sscan(l, &limit)
		limit = max(1, min(limit, 10000))
	}
	after := r.URL.Query().Get("lastFileName")
	ents, err := st.ReadDir(dir.Ino, after, limit+1)
	if err != nil {
		writeErrno(w, p, err)
		return
	}
	more := len(ents) > limit
	if more {
		ents = ents[:limit]
	}
	out := make([]listEntry, 0, len(ents))
	for _, e := range ents {
		le := listEntry{FullPath: path.Join(s.shown(p), e.Name), Name: e.Name, IsDir: e.Mode&syscall.S_IFMT == syscall.S_IFDIR, Mode: e.Mode}
		if in, err := st.GetAttr(e.Ino); err == nil {
			le.Size, le.Mtime, le.Uid, le.Gid = in.Size, time.Unix(0, in.Mtime).UTC(), in.Uid, in.Gid
		}
		out = append(out, le)
	}
	last := ""
	if len(out) > 0 {
		last = out[len(out)-1].Name
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") || r.URL.Query().Get("pretty") != "" {
		httpx.WriteJSON(w, http.StatusOK, map[string]any{
			"Path": s.shown(p), "Entries": out, "Limit": limit, "LastFileName": last, "ShouldDisplayLoadMore": more,
		})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = listPage.Execute(w, map[string]any{"Path": s.shown(p), "Entries": out, "More": more, "Last": url.QueryEscape(last)})
}

// httpPut stores the request body as the file at p (creating parent
// directories), replacing any previous content in one atomic step.
func (s *Server) httpPut(w http.ResponseWriter, r *http.Request, p string) {
	ctx := r.Context()
	if strings.HasSuffix(r.URL.Path, "/") {
		if _, err := s.mkdirAll(ctx, p, 0o755); err != nil {
			writeErrno(w, "mkdir "+p, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, map[string]string{"path": s.shown(p)})
		return
	}
	body, name, err := uploadBody(r)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if p == "/" {
		httpx.WriteError(w, http.StatusBadRequest, "filer: cannot write the root directory")
		return
	}
	if name != "" && strings.HasSuffix(r.URL.Path, "/") {
		if ValidateName(name) != 0 {
			httpx.WriteError(w, http.StatusBadRequest, fmt.Sprintf("filer: file name %q is not allowed", name))
			return
		}
		p = path.Join(p, name)
	}
	slices, size, err := s.uploadChunks(ctx, body)
	if err != nil {
		s.dropUploaded(slices)
		httpx.WriteError(w, errnoStatus(err), fmt.Sprintf("filer: store %s: %v", p, err))
		return
	}
	dir, base := path.Split(p)
	parent, err := s.mkdirAll(ctx, dir, 0o755)
	if err != nil {
		s.dropUploaded(slices)
		writeErrno(w, "mkdir "+dir, err)
		return
	}
	res, err := s.applyOp(ctx, &Create{Parent: parent, Name: base, Mode: 0o644})
	if err != nil {
		s.dropUploaded(slices)
		writeErrno(w, "create "+p, err)
		return
	}
	if _, err := s.applyOp(ctx, &CommitSlices{Ino: res.Inode.Ino, Slices: slices, Size: size, Truncate: true}); err != nil {
		s.dropUploaded(slices)
		writeErrno(w, "write "+p, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{"name": base, "size": size})
}

// dropUploaded deletes needles uploaded for a write that was not committed.
func (s *Server) dropUploaded(slices []Slice) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sl := range slices {
		if err := s.data.Delete(ctx, sl.Fid); err != nil {
			s.log.Warn("could not delete a needle of a failed upload; it is unreferenced and wastes space until vacuum", "fid", sl.Fid, "err", err)
		}
	}
}

// uploadBody returns the content of a PUT/POST: the first file part of a
// multipart form, or the raw body.
func uploadBody(r *http.Request) (io.Reader, string, error) {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !strings.HasPrefix(ct, "multipart/") {
		return r.Body, "", nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return nil, "", fmt.Errorf("filer: multipart body has no file part: %w", err)
		}
		if part.FileName() != "" || part.FormName() == "file" {
			return part, part.FileName(), nil
		}
	}
}

// uploadChunks stores body as needles of ChunkSize and returns their slices.
func (s *Server) uploadChunks(ctx context.Context, body io.Reader) ([]Slice, uint64, error) {
	var slices []Slice
	var off uint64
	buf := make([]byte, s.cfg.ChunkSize)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			f, werr := s.data.Write(ctx, buf[:n], s.cfg.Collection, s.cfg.Replication)
			if werr != nil {
				return slices, 0, werr
			}
			slices = append(slices, Slice{Off: off, Len: uint64(n), Fid: f})
			off += uint64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return slices, off, nil
		}
		if err != nil {
			return slices, 0, fmt.Errorf("read request body: %w", err)
		}
	}
}

// mkdirAll resolves or creates every directory of p and returns the last.
func (s *Server) mkdirAll(ctx context.Context, p string, mode uint32) (uint64, error) {
	ino := uint64(RootIno)
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		in, err := s.fsm.State().Lookup(ino, name)
		if err == nil {
			if !in.IsDir() {
				return 0, syscall.ENOTDIR
			}
			ino = in.Ino
			continue
		}
		res, _, err := s.apply(ctx, &Command{Op: &Mkdir{Parent: ino, Name: name, Mode: mode}})
		if err != nil {
			return 0, err
		}
		switch res.Errno {
		case 0:
			ino = res.Inode.Ino
		case syscall.EEXIST: // created concurrently
			in, err := s.fsm.State().Lookup(ino, name)
			if err != nil {
				return 0, err
			}
			ino = in.Ino
		default:
			return 0, res.Errno
		}
	}
	return ino, nil
}

func (s *Server) httpDelete(w http.ResponseWriter, r *http.Request, p string) {
	if p == "/" {
		httpx.WriteError(w, http.StatusBadRequest, "filer: refusing to delete the root directory")
		return
	}
	recursive := r.URL.Query().Get("recursive") == "true"
	dir, base := path.Split(p)
	parent, err := s.fsm.State().Resolve(dir)
	if err != nil {
		writeErrno(w, p, err)
		return
	}
	if err := s.remove(r.Context(), parent.Ino, base, recursive); err != nil {
		writeErrno(w, "delete "+p, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// remove deletes name in parent, and with recursive everything below it.
func (s *Server) remove(ctx context.Context, parent uint64, name string, recursive bool) error {
	in, err := s.fsm.State().Lookup(parent, name)
	if err != nil {
		return err
	}
	var op Op = &Unlink{Parent: parent, Name: name}
	if in.IsDir() {
		if recursive {
			for {
				ents, err := s.fsm.State().ReadDir(in.Ino, "", 1000)
				if err != nil {
					return err
				}
				if len(ents) == 0 {
					break
				}
				for _, e := range ents {
					if err := s.remove(ctx, in.Ino, e.Name, true); err != nil && !errors.Is(err, syscall.ENOENT) {
						return err
					}
				}
			}
		}
		op = &Rmdir{Parent: parent, Name: name}
	}
	_, err = s.applyOp(ctx, op)
	return err
}

// httpMove renames from to to, both cleaned namespace paths.
func (s *Server) httpMove(w http.ResponseWriter, r *http.Request, from, to string) {
	st := s.fsm.State()
	fd, fb := path.Split(from)
	td, tb := path.Split(to)
	src, err := st.Resolve(fd)
	if err != nil {
		writeErrno(w, from, err)
		return
	}
	dst, err := st.Resolve(td)
	if err != nil {
		writeErrno(w, to, err)
		return
	}
	if _, err := s.applyOp(r.Context(), &Rename{OldParent: src.Ino, OldName: fb, NewParent: dst.Ino, NewName: tb}); err != nil {
		writeErrno(w, "move "+from+" to "+to, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fileReader reads a file's bytes from its slices (holes read as zeros).
// in is an inode as the state answers it: its slices are its pieces.
type fileReader struct {
	ctx  context.Context
	data *DataClient
	in   *Inode
}

func (f *fileReader) ReadAt(p []byte, off int64) (int, error) {
	size := int64(f.in.Size)
	if off >= size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), size-off)
	for _, e := range PieceExtents(f.in.Slices, uint64(off), uint64(n)) {
		dst := p[int64(e.Off)-off : int64(e.Off)-off+int64(e.Len)]
		if e.Fid == "" {
			clear(dst)
			continue
		}
		b, err := f.data.Read(f.ctx, e.Fid, int64(e.NeedleOff), int64(e.Len))
		if err != nil {
			return 0, err
		}
		if int64(len(b)) != int64(e.Len) {
			return 0, fmt.Errorf("%w: needle %s returned %d of %d bytes", ErrData, e.Fid, len(b), e.Len)
		}
		copy(dst, b)
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}
