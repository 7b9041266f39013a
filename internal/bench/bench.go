// Package bench is the engine of `cairn benchmark`: it writes N needles of a
// fixed size through the master's assign API and the volume servers' upload
// API, reads every one of them back in random order, verifies each read
// against the CRC32C of what was written, and reports throughput and latency
// per phase, the way `weed benchmark` does for SeaweedFS.
package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what to benchmark and how hard.
type Config struct {
	Master      string       // master HTTP address host:port
	N           int          // number of needles
	Concurrency int          // parallel workers
	Size        int          // bytes per needle
	Replication string       // "" = master default
	Collection  string       // "" = default collection
	Client      *http.Client // nil: a keep-alive client sized for Concurrency
	Scheme      string       // "http" when empty
	Out         io.Writer    // the report; nil discards it
	Progress    io.Writer    // optional: a progress line every ~2s
	SkipRead    bool         // only write
	AssignBatch int          // fids per assign call; 0 means 64
}

// Result is what one phase measured. Latencies are per needle request.
type Result struct {
	Phase     string
	Requests  int // requests attempted (writes: needles attempted)
	Errors    int // failed requests, corrupt reads included
	Corrupt   int // reads whose bytes did not match what was written
	Bytes     int64
	Elapsed   time.Duration
	ReqPerSec float64 // successful requests per second
	MBPerSec  float64 // payload 10^6 bytes per second
	P50       time.Duration
	P90       time.Duration
	P99       time.Duration
	Max       time.Duration
	Min       time.Duration
	Mean      time.Duration

	std time.Duration // standard deviation of the latencies
}

// DefaultAssignBatch is how many file ids one assign call asks for.
const DefaultAssignBatch = 64

// progressInterval is how often a progress line is printed.
var progressInterval = 2 * time.Second

// maxCorruptLines caps how many corrupt reads are described one by one.
const maxCorruptLines = 10

// written is one needle that was stored successfully.
type written struct {
	fid  string
	url  string // volume server host:port
	auth string // the assign's token; it also allows reading the needle
	crc  uint32
	size int
}

// assignReply is the master's /dir/assign answer.
type assignReply struct {
	Fid       string `json:"fid"`
	URL       string `json:"url"`
	PublicURL string `json:"publicUrl"`
	Count     int    `json:"count"`
	Auth      string `json:"auth"` // data-path token, when the cluster uses them
	Error     string `json:"error"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Run writes cfg.N needles, reads them back unless cfg.SkipRead, prints the
// report to cfg.Out and returns one Result per phase that ran. It returns an
// error when a request failed, a read came back corrupt, or ctx was
// cancelled; the results and the report cover what was done either way.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, out: cfg.Out}
	b.header()

	var results []Result
	wres, recs := b.writePhase(ctx)
	results = append(results, wres)
	b.phaseReport(wres, &b.writeErrs)
	if ctx.Err() == nil && !cfg.SkipRead {
		rres := b.readPhase(ctx, recs)
		results = append(results, rres)
		b.phaseReport(rres, &b.readErrs)
	}
	b.summary(results)
	return results, b.verdict(ctx, results)
}

func (c *Config) fill() error {
	if c.Master == "" {
		return errors.New("benchmark: no master address (want host:port)")
	}
	if c.N <= 0 {
		return fmt.Errorf("benchmark: number of needles must be positive, got %d", c.N)
	}
	if c.Size <= 0 {
		return fmt.Errorf("benchmark: needle size must be positive, got %d", c.Size)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Concurrency > c.N {
		c.Concurrency = c.N
	}
	if c.AssignBatch <= 0 {
		c.AssignBatch = DefaultAssignBatch
	}
	if c.Scheme == "" {
		c.Scheme = "http"
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Client == nil {
		c.Client = DefaultClient(c.Concurrency)
	}
	return nil
}

// DefaultClient is a keep-alive client that keeps enough idle connections
// per host for concurrency workers.
func DefaultClient(concurrency int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	per := max(concurrency*2, 64)
	tr.MaxIdleConnsPerHost = per
	tr.MaxIdleConns = per * 4
	tr.DisableCompression = true
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}
}

type bench struct {
	cfg       Config
	out       io.Writer
	outMu     sync.Mutex
	writeErrs errorLog
	readErrs  errorLog

	assignCalls  atomic.Int64
	assignErrors atomic.Int64
	assignLat    latencies

	corruptShown atomic.Int64
}

func (b *bench) printf(format string, args ...any) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	fmt.Fprintf(b.out, format, args...)
}

// latencies collects request durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(ds []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, ds...)
	l.mu.Unlock()
}

// errorLog counts errors and remembers the first few distinct messages.
type errorLog struct {
	mu    sync.Mutex
	order []string
	seen  map[string]*errEntry
	other int // errors whose message was not kept
}

type errEntry struct {
	count   int
	example string
}

const maxDistinctErrors = 5

func (e *errorLog) add(msg, example string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = make(map[string]*errEntry)
	}
	if ent, ok := e.seen[msg]; ok {
		ent.count++
		return
	}
	if len(e.order) >= maxDistinctErrors {
		e.other++
		return
	}
	e.order = append(e.order, msg)
	e.seen[msg] = &errEntry{count: 1, example: example}
}

// startProgress prints "phase: done/total, rate" every progressInterval
// until the returned function is called; that function waits for the
// printer to finish.
func (b *bench) startProgress(phase string, done *atomic.Int64, total int, start time.Time) (stop func()) {
	w := b.cfg.Progress
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	t := time.NewTicker(progressInterval)
	go func() {
		defer close(finished)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				n := done.Load()
				el := time.Since(start).Seconds()
				fmt.Fprintf(w, "%s: %d/%d needles, %.0f req/s, %.1fs elapsed\n",
					phase, n, total, float64(n)/el, el)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// --- write phase ---

func (b *bench) writePhase(ctx context.Context) (Result, []written) {
	cfg := b.cfg
	chunk := min(cfg.AssignBatch, (cfg.N+cfg.Concurrency-1)/cfg.Concurrency)
	chunk = max(chunk, 1)

	var (
		claimed  atomic.Int64
		done     atomic.Int64
		errs     atomic.Int64
		attempts atomic.Int64
		nbytes   atomic.Int64
		lat      latencies
		recsMu   sync.Mutex
		recs     = make([]written, 0, cfg.N)
		wg       sync.WaitGroup
	)
	start := time.Now()
	stopProgress := b.startProgress("write", &done, cfg.N, start)

	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := newRand()
			buf := make([]byte, cfg.Size)
			var myLat []time.Duration
			var myRecs []written
			for ctx.Err() == nil {
				first := claimed.Add(int64(chunk)) - int64(chunk)
				if first >= int64(cfg.N) {
					break
				}
				want := int(min(int64(chunk), int64(cfg.N)-first))
				for want > 0 && ctx.Err() == nil {
					a, err := b.assign(ctx, want)
					if err != nil {
						if ctx.Err() != nil {
							break
						}
						// The needles of this batch cannot be written.
						b.writeErrs.add(err.Error(), "")
						errs.Add(int64(want))
						attempts.Add(int64(want))
						done.Add(int64(want))
						want = 0
						break
					}
					got := min(a.Count, want)
					for i := 0; i < got && ctx.Err() == nil; i++ {
						id := a.Fid
						if i > 0 {
							id = a.Fid + "_" + strconv.Itoa(i)
						}
						_, _ = rng.Read(buf)
						crc := crc32.Checksum(buf, castagnoli)
						t0 := time.Now()
						err := b.put(ctx, a.URL, id, a.Auth, buf)
						d := time.Since(t0)
						if err != nil && ctx.Err() != nil {
							break // cancelled mid-request: not a failure
						}
						attempts.Add(1)
						done.Add(1)
						if err != nil {
							errs.Add(1)
							b.writeErrs.add(err.Error(), id)
							continue
						}
						myLat = append(myLat, d)
						nbytes.Add(int64(len(buf)))
						myRecs = append(myRecs, written{fid: id, url: a.URL, auth: a.Auth, crc: crc, size: len(buf)})
					}
					want -= got
				}
			}
			lat.add(myLat)
			recsMu.Lock()
			recs = append(recs, myRecs...)
			recsMu.Unlock()
		}()
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start)
	res := makeResult("write", int(attempts.Load()), int(errs.Load()), nbytes.Load(), elapsed, lat.d)
	return res, recs
}

// assign asks the master for up to n file ids in one call.
func (b *bench) assign(ctx context.Context, n int) (assignReply, error) {
	cfg := b.cfg
	q := url.Values{}
	q.Set("count", strconv.Itoa(n))
	if cfg.Replication != "" {
		q.Set("replication", cfg.Replication)
	}
	if cfg.Collection != "" {
		q.Set("collection", cfg.Collection)
	}
	u := cfg.Scheme + "://" + cfg.Master + "/dir/assign?" + q.Encode()
	b.assignCalls.Add(1)
	t0 := time.Now()
	a, err := b.doAssign(ctx, u)
	b.assignLat.add([]time.Duration{time.Since(t0)})
	if err != nil {
		b.assignErrors.Add(1)
	}
	return a, err
}

func (b *bench) doAssign(ctx context.Context, u string) (assignReply, error) {
	var a assignReply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return a, fmt.Errorf("assign from master %s: %v", b.cfg.Master, err)
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return a, fmt.Errorf("assign from master %s: %v", b.cfg.Master, stripURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return a, fmt.Errorf("assign from master %s: reading reply: %v", b.cfg.Master, err)
	}
	jerr := json.Unmarshal(body, &a)
	if resp.StatusCode != http.StatusOK || a.Error != "" {
		msg := a.Error
		if msg == "" {
			msg = snippet(body)
		}
		return a, fmt.Errorf("assign from master %s: %s: %s", b.cfg.Master, resp.Status, msg)
	}
	if jerr != nil {
		return a, fmt.Errorf("assign from master %s: reply is not JSON: %s", b.cfg.Master, snippet(body))
	}
	if a.Fid == "" || a.URL == "" {
		return a, fmt.Errorf("assign from master %s: reply has no fid or url: %s", b.cfg.Master, snippet(body))
	}
	if a.Count <= 0 {
		a.Count = 1
	}
	return a, nil
}

// put uploads one needle.
func (b *bench) put(ctx context.Context, host, id, auth string, data []byte) error {
	u := b.cfg.Scheme + "://" + host + "/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("write to %s: %v", host, err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("write to %s: %v", host, stripURL(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("write to %s: %s: %s", host, resp.Status, errorText(body))
	}
	return nil
}

// --- read phase ---

func (b *bench) readPhase(ctx context.Context, recs []written) Result {
	cfg := b.cfg
	order := make([]written, len(recs))
	copy(order, recs)
	rng := newRand()
	r := rand.New(rng)
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	var (
		next     atomic.Int64
		done     atomic.Int64
		errs     atomic.Int64
		corrupt  atomic.Int64
		attempts atomic.Int64
		nbytes   atomic.Int64
		lat      latencies
		wg       sync.WaitGroup
	)
	workers := max(min(cfg.Concurrency, len(order)), 1)
	start := time.Now()
	stopProgress := b.startProgress("read", &done, len(order), start)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var myLat []time.Duration
			buf := make([]byte, 0, cfg.Size+512)
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(order)) {
					break
				}
				rec := order[i]
				t0 := time.Now()
				data, err := b.get(ctx, rec.url, rec.fid, rec.auth, buf[:0])
				d := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					break
				}
				attempts.Add(1)
				done.Add(1)
				if err != nil {
					errs.Add(1)
					b.readErrs.add(err.Error(), rec.fid)
					continue
				}
				buf = data
				if got := crc32.Checksum(data, castagnoli); got != rec.crc || len(data) != rec.size {
					errs.Add(1)
					corrupt.Add(1)
					b.readErrs.add("corrupt read: bytes differ from what was written", rec.fid)
					if b.corruptShown.Add(1) <= maxCorruptLines {
						b.printf("CORRUPT READ: needle %s from %s: %d bytes with CRC32C %08x, wrote %d bytes with CRC32C %08x\n",
							rec.fid, rec.url, len(data), got, rec.size, rec.crc)
					}
					continue
				}
				myLat = append(myLat, d)
				nbytes.Add(int64(len(data)))
			}
			lat.add(myLat)
		}()
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start)
	res := makeResult("read", int(attempts.Load()), int(errs.Load()), nbytes.Load(), elapsed, lat.d)
	res.Corrupt = int(corrupt.Load())
	return res
}

// get reads one needle into buf (reusing its capacity).
func (b *bench) get(ctx context.Context, host, id, auth string, buf []byte) ([]byte, error) {
	u := b.cfg.Scheme + "://" + host + "/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("read from %s: %v", host, err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read from %s: %v", host, stripURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("read from %s: %s: %s", host, resp.Status, errorText(body))
	}
	w := bytes.NewBuffer(buf)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return nil, fmt.Errorf("read from %s: body cut short: %v", host, stripURL(err))
	}
	return w.Bytes(), nil
}

// --- helpers ---

func newRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}

// errorText is the "error" field of a JSON error reply, else a short snippet.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "(empty reply)"
	}
	return snippet(body)
}

func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// stripURL drops the per-needle URL from transport errors so that the same
// failure on different needles counts as one distinct message.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func makeResult(phase string, requests, errs int, nbytes int64, elapsed time.Duration, lat []time.Duration) Result {
	r := Result{Phase: phase, Requests: requests, Errors: errs, Bytes: nbytes, Elapsed: elapsed}
	if s := elapsed.Seconds(); s > 0 {
		r.ReqPerSec = float64(requests-errs) / s
		r.MBPerSec = float64(nbytes) / 1e6 / s
	}
	st := computeStats(lat)
	r.P50, r.P90, r.P99, r.Max, r.Min, r.Mean, r.std = st.p50, st.p90, st.p99, st.max, st.min, st.mean, st.std
	return r
}
