package master

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-storage/cairn/internal/httpx"
)

// forwardedHeader marks a request a follower proxied to the leader.
const forwardedHeader = "X-Cairn-Forwarded-By"

// AssignJSON is the answer of /dir/assign, as SeaweedFS clients expect it.
type AssignJSON struct {
	Fid       string `json:"fid"`
	URL       string `json:"url"`
	PublicURL string `json:"publicUrl"`
	Count     uint32 `json:"count"`
	// Auth is the token to send as "Authorization: Bearer <auth>" when
	// writing or deleting the assigned file ids.
	Auth string `json:"auth,omitempty"`
}

// LocationJSON is one replica in a LookupJSON.
type LocationJSON struct {
	URL       string `json:"url"`
	PublicURL string `json:"publicUrl"`
}

// LookupJSON is the answer of /dir/lookup.
type LookupJSON struct {
	VolumeOrFileID string         `json:"volumeOrFileId"`
	Locations      []LocationJSON `json:"locations,omitempty"`
	// Auth is a read token for the volume, when reads need one.
	Auth  string `json:"auth,omitempty"`
	Error string `json:"error,omitempty"`
}

func (m *Master) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/dir/assign", m.counted("assign", m.onLeader(http.HandlerFunc(m.handleAssign))))
	mux.Handle("/dir/lookup", m.counted("lookup", m.onLeader(http.HandlerFunc(m.handleLookup))))
	mux.Handle("/cluster/status", m.counted("status", http.HandlerFunc(m.handleStatus)))
	mux.Handle("/healthz", m.counted("healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	mux.Handle("/readyz", m.counted("readyz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Ready(); err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "leader": m.node.Load().LeaderHTTP()})
	})))
	mux.Handle("/metrics", promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("/", m.counted("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, http.StatusNotFound, "no such endpoint "+r.URL.Path+"; try /dir/assign, /dir/lookup or /cluster/status")
	})))
	return mux
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// counted counts requests to h by api and status code.
func (m *Master) counted(api string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		m.metrics.request(api, strconv.Itoa(rec.code), start)
	})
}

// onLeader serves h on the leader and proxies the request to the leader on
// a follower.
func (m *Master) onLeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := m.leaderEpoch(); ok {
			h.ServeHTTP(w, r)
			return
		}
		node := m.node.Load()
		if node == nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, "master is shutting down; retry on another master")
			return
		}
		leader := node.LeaderHTTP()
		if leader == "" || leader == m.addr {
			httpx.WriteError(w, http.StatusServiceUnavailable, ErrNoLeader.Error())
			return
		}
		if r.Header.Get(forwardedHeader) != "" {
			httpx.WriteError(w, http.StatusServiceUnavailable, "master "+m.addr+" is not the leader either (leader changing); retry in a few seconds")
			return
		}
		m.proxy(leader).ServeHTTP(w, r)
	})
}

func (m *Master) proxy(leader string) *httputil.ReverseProxy {
	target := &url.URL{Scheme: httpx.Scheme(m.cfg.Security), Host: leader}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, m.addr)
		},
		Transport: m.client.Transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			httpx.WriteError(w, http.StatusServiceUnavailable, "cannot reach master leader "+leader+": "+err.Error()+"; retry in a few seconds")
		},
	}
}

func (m *Master) handleAssign(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		httpx.WriteError(w, http.StatusMethodNotAllowed, "use GET or POST for /dir/assign")
		return
	}
	if err := r.ParseForm(); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad query or form: "+err.Error())
		return
	}
	req, err := parseAssignQuery(r.Form)
	if err != nil {
		httpx.WriteError(w, httpStatus(err), errorMessage(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	resp, err := m.assign(ctx, req)
	if err != nil {
		httpx.WriteError(w, httpStatus(err), errorMessage(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, AssignJSON{Fid: resp.Fid, URL: resp.Url, PublicURL: resp.PublicUrl, Count: resp.Count, Auth: resp.Auth})
}

func (m *Master) handleLookup(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		httpx.WriteJSON(w, http.StatusBadRequest, LookupJSON{Error: "bad query or form: " + err.Error()})
		return
	}
	id, arg, err := parseLookupQuery(r.Form)
	out := LookupJSON{VolumeOrFileID: arg}
	if err != nil {
		out.Error = errorMessage(err)
		httpx.WriteJSON(w, httpStatus(err), out)
		return
	}
	resp, err := m.lookup(id)
	if err != nil {
		out.Error = errorMessage(err)
		httpx.WriteJSON(w, httpStatus(err), out)
		return
	}
	out.Locations = []LocationJSON{}
	for _, l := range resp.Locations {
		out.Locations = append(out.Locations, LocationJSON{URL: l.Url, PublicURL: l.PublicUrl})
	}
	out.Auth = resp.Auth
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (m *Master) handleStatus(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, statusJSON(m.clusterStatus()))
}
