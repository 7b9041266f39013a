package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/httpx"
	"github.com/cairn-storage/cairn/internal/security"
)

// handleData serves the SeaweedFS-compatible data path on /<fid>.
func (s *Server) handleData(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		httpx.WriteError(w, http.StatusNotFound, "no file id in the path; use /<volume>,<key><cookie>")
		return
	}
	id, err := fid.Parse(r.URL.Path)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	op := security.OpWrite
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		op = security.OpRead
	}
	if err := s.cfg.Tokens.Verify(r.Header.Get("Authorization"), op, id); err != nil {
		s.log.Warn("refused a data request without a valid token", "method", r.Method, "fid", id.String(), "remote", r.RemoteAddr, "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
		httpx.WriteError(w, http.StatusUnauthorized, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.handleRead(w, r, id)
	case http.MethodPost, http.MethodPut:
		s.handleWrite(w, r, id)
	case http.MethodDelete:
		s.handleDelete(w, r, id)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE")
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not supported on a file id")
	}
}

// writeStatus maps a store or replication error to an HTTP status.
func writeStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrDeleted), errors.Is(err, ErrCookieMismatch):
		return http.StatusNotFound
	case errors.Is(err, ErrReadOnly), errors.Is(err, errNotWritable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// readBody returns the needle data: the raw body, or the first file part of
// a multipart form (what `curl -F file=@x` sends).
func readBody(r *http.Request, id fid.FileID) (*Needle, error) {
	body := http.MaxBytesReader(nil, r.Body, MaxNeedleSize+1)
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var src io.Reader = body
	if strings.HasPrefix(ct, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		part, err := mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("volume: multipart body has no part: %w", err)
		}
		defer part.Close()
		src = part
	}
	var n *Needle
	var err error
	if size := r.ContentLength; src == io.Reader(body) && size > 0 && size <= MaxNeedleSize {
		// A plain body of announced length is read straight into the
		// record it becomes: one allocation, no copy after the read.
		n = newRecord(id.Key, id.Cookie, int(size))
		var k int
		k, err = io.ReadFull(src, n.Data)
		n.trim(k)
		if err != nil {
			n.recycle()
		}
	} else {
		n = &Needle{Key: id.Key, Cookie: id.Cookie}
		n.Data, err = io.ReadAll(io.LimitReader(src, MaxNeedleSize+1))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, MaxNeedleSize)
		}
		return nil, fmt.Errorf("volume: read request body: %w", err)
	}
	if len(n.Data) > MaxNeedleSize {
		return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, MaxNeedleSize)
	}
	return n, nil
}

// proxyElsewhere forwards a write or delete for a volume this server does
// not hold (any more: it may have just moved away, see volume.evacuate) to
// the volume's primary per the master, and reports whether it did.
func (s *Server) proxyElsewhere(w http.ResponseWriter, r *http.Request, id fid.FileID) bool {
	// Not the cached placement: it may still name this server.
	loc := s.lookup(r.Context(), id.Volume)
	if loc == nil || loc.Primary == "" || loc.Primary == s.url {
		return false
	}
	s.proxy(w, r, loc.Primary)
	return true
}

func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request, id fid.FileID) {
	v, ok := s.store.Get(id.Volume)
	if !ok && s.proxyElsewhere(w, r, id) {
		return
	}
	if !ok {
		httpx.WriteError(w, http.StatusNotFound, fmt.Sprintf("volume %d is not on this server; ask the master where it lives (/dir/lookup?volumeId=%d)", id.Volume, id.Volume))
		return
	}
	loc := s.locate(r.Context(), id.Volume)
	if loc != nil && loc.Primary != "" && loc.Primary != s.url {
		s.proxy(w, r, loc.Primary)
		return
	}
	n, err := readBody(r, id)
	if err != nil {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	size := len(n.Data)
	err = s.replicatedWrite(r.Context(), v, n)
	// Every replica has answered and the local writer is done with the
	// record: its buffer goes back to the pool for the next body.
	n.recycle()
	if err != nil {
		s.log.Warn("write failed", "fid", id.String(), "size", size, "err", err)
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	etag := fmt.Sprintf("%08x", n.CRC) // computed when the record was built
	w.Header().Set("ETag", `"`+etag+`"`)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{"name": "", "size": size, "eTag": etag})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, id fid.FileID) {
	v, ok := s.store.Get(id.Volume)
	if !ok && s.proxyElsewhere(w, r, id) {
		return
	}
	if !ok {
		httpx.WriteError(w, http.StatusNotFound, fmt.Sprintf("volume %d is not on this server", id.Volume))
		return
	}
	loc := s.locate(r.Context(), id.Volume)
	if loc != nil && loc.Primary != "" && loc.Primary != s.url {
		s.proxy(w, r, loc.Primary)
		return
	}
	// The index has the size to report: reading the needle (up to 64
	// MiB) to learn it cost a disk read per delete.
	old, err := v.Stat(id.Key, id.Cookie)
	if err != nil {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	size := int(old.Size)
	n := &Needle{Key: id.Key, Cookie: id.Cookie, Deleted: true}
	if err := s.replicatedWrite(r.Context(), v, n); err != nil {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]any{"size": size})
}

func (s *Server) handleRead(w http.ResponseWriter, r *http.Request, id fid.FileID) {
	v, ok := s.store.Get(id.Volume)
	if !ok {
		httpx.WriteError(w, http.StatusNotFound, fmt.Sprintf("volume %d is not on this server; ask the master where it lives (/dir/lookup?volumeId=%d)", id.Volume, id.Volume))
		return
	}
	if r.Method == http.MethodGet && s.serveRange(w, r, v, id) {
		return
	}
	n, err := s.read(r.Context(), v, id)
	if err != nil {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	etag := fmt.Sprintf("%08x", n.CRC) // verified when the needle was read
	w.Header().Set("ETag", `"`+etag+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Unix(0, int64(n.AppendNs)), bytes.NewReader(n.Data))
}

// serveRange answers a GET of one byte range of a needle held here, reading
// and checking only the blocks of the needle the range covers (see
// Volume.ReadRange), and reports whether it answered. It leaves to the
// whole-needle path (http.ServeContent) what that path does better: no or
// several ranges, conditional requests, empty needles, and needles not in
// the local index (a copy catching up asks its peers there).
func (s *Server) serveRange(w http.ResponseWriter, r *http.Request, v *Volume, id fid.FileID) bool {
	spec := r.Header.Get("Range")
	if spec == "" || conditional(r) {
		return false
	}
	st, err := v.Stat(id.Key, id.Cookie)
	if err != nil || st.Size == 0 {
		return false
	}
	off, n, ok := parseRange(spec, int64(st.Size))
	if !ok {
		return false
	}
	var rg Range
	if off < int64(st.Size) {
		var release func()
		rg, release, err = s.readRange(r.Context(), v, id, off, n)
		// The bytes are written (or the write failed) before this returns.
		defer release()
		if err != nil {
			httpx.WriteError(w, writeStatus(err), err.Error())
			return true
		}
	}
	if len(rg.Data) == 0 { // past the end, or the needle shrank meanwhile
		size := max(rg.Size, int64(st.Size))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		httpx.WriteError(w, http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("range %q is beyond the end of needle %s (%d bytes)", spec, id, size))
		return true
	}
	h := w.Header()
	h.Set("ETag", fmt.Sprintf(`"%08x"`, rg.CRC))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Last-Modified", time.Unix(0, int64(rg.AppendNs)).UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rg.Off, rg.Off+int64(len(rg.Data))-1, rg.Size))
	h.Set("Content-Length", strconv.Itoa(len(rg.Data)))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(rg.Data)
	return true
}

// conditional reports whether r carries a precondition that the
// whole-needle path evaluates.
func conditional(r *http.Request) bool {
	for _, k := range []string{"If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(k) != "" {
			return true
		}
	}
	return false
}

// parseRange resolves a Range header holding exactly one byte range
// ("bytes=a-b", "bytes=a-", "bytes=-n") against a needle of size bytes
// (size > 0). It returns the first byte and the length; off >= size means
// the range is not satisfiable. ok is false for anything else (other
// units, several ranges, a malformed or empty range), which the
// whole-needle path answers as RFC 9110 says.
func parseRange(spec string, size int64) (off, n int64, ok bool) {
	rest, found := strings.CutPrefix(spec, "bytes=")
	if !found || strings.Contains(rest, ",") {
		return 0, 0, false
	}
	first, last, found := strings.Cut(textproto.TrimString(rest), "-")
	if !found {
		return 0, 0, false
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	num := func(s string) (int64, bool) {
		if s == "" || s[0] < '0' || s[0] > '9' {
			return 0, false
		}
		v, err := strconv.ParseInt(s, 10, 64)
		return v, err == nil
	}
	if first == "" { // the last n bytes
		k, ok := num(last)
		if !ok || k == 0 {
			return 0, 0, false
		}
		k = min(k, size)
		return size - k, k, true
	}
	a, ok := num(first)
	if !ok {
		return 0, 0, false
	}
	if a >= size {
		return a, 0, true
	}
	end := size - 1
	if last != "" {
		b, ok := num(last)
		if !ok || b < a {
			return 0, 0, false
		}
		end = min(b, size-1)
	}
	return a, end - a + 1, true
}

// proxy forwards a data request to the volume's primary, so clients may
// write to any replica.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, target string) {
	if r.Header.Get("X-Cairn-Forwarded") != "" {
		httpx.WriteError(w, http.StatusServiceUnavailable, "volume primary changed while forwarding; retry")
		return
	}
	u := httpx.Scheme(s.cfg.Security) + "://" + target + r.URL.RequestURI()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, r.Body)
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	req.Header = r.Header.Clone()
	req.Header.Set("X-Cairn-Forwarded", s.url)
	req.ContentLength = r.ContentLength
	resp, err := s.httpc.Do(req)
	if err != nil {
		httpx.WriteError(w, http.StatusBadGateway, fmt.Sprintf("volume: primary %s unreachable: %v; retry", target, err))
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
