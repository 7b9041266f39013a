package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
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
func readBody(r *http.Request) ([]byte, error) {
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
	var data []byte
	var err error
	if n := r.ContentLength; src == io.Reader(body) && n > 0 && n <= MaxNeedleSize {
		// A plain body of announced length: one allocation, no growing
		// copies (needles are up to a few MiB).
		data = make([]byte, n)
		var k int
		k, err = io.ReadFull(src, data)
		data = data[:k]
	} else {
		data, err = io.ReadAll(io.LimitReader(src, MaxNeedleSize+1))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, MaxNeedleSize)
		}
		return nil, fmt.Errorf("volume: read request body: %w", err)
	}
	if len(data) > MaxNeedleSize {
		return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, MaxNeedleSize)
	}
	return data, nil
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
	data, err := readBody(r)
	if err != nil {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	n := &Needle{Key: id.Key, Cookie: id.Cookie, Data: data}
	if err := s.replicatedWrite(r.Context(), v, loc, n); err != nil {
		s.log.Warn("write failed", "fid", id.String(), "size", len(data), "err", err)
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	etag := fmt.Sprintf("%08x", crc32.Checksum(data, castagnoli))
	w.Header().Set("ETag", `"`+etag+`"`)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{"name": "", "size": len(data), "eTag": etag})
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
	old, err := v.Read(id.Key, id.Cookie)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		httpx.WriteError(w, writeStatus(err), err.Error())
		return
	}
	size := 0
	if old != nil {
		size = len(old.Data)
	}
	n := &Needle{Key: id.Key, Cookie: id.Cookie, Deleted: true}
	if err := s.replicatedWrite(r.Context(), v, loc, n); err != nil {
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
