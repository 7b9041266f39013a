package filer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/pb"
	"github.com/cairn-storage/cairn/internal/security"
)

// ErrData is wrapped by every failure to store or fetch needle data.
var ErrData = errors.New("filer: needle data unavailable")

// DataClient stores and fetches needles on volume servers. It is shared by
// the filer's HTTP API, its garbage collector and the mount. Safe for
// concurrent use.
type DataClient struct {
	Assign func(ctx context.Context, req *pb.AssignRequest) (*pb.AssignResponse, error)
	Lookup func(ctx context.Context, vid uint32) (*pb.LookupResponse, error)
	// Reserve, if set, is called with assigned file ids before their
	// needles are stored (it registers the uploads with the filer, so a
	// crash before a needle is referenced leaks nothing).
	Reserve func(ctx context.Context, fids []string) error
	// Batch, when above 1, assigns and reserves file ids Batch at a time
	// and keeps the unused ones for the next writes (for a few seconds), so
	// a write is one round trip to the volume servers, not three.
	Batch  int
	HTTP   *http.Client
	Scheme string // "http" or "https"
	// Inline, when set, reads inline data (fids of fid.InlineVolume, held
	// by the filer: inline.go). Without it such a read fails.
	Inline func(ctx context.Context, id string, off, n int64) ([]byte, error)
	// Tokens, when set, signs the data-path tokens of deletes and reads
	// (the filer holds the cluster key). Without it, writes carry the
	// assign's token, reads the lookup's, and deletes none (a mount or the
	// shell never deletes needles; the filer's GC does).
	Tokens *security.Tokens

	mu    sync.Mutex // guards cache and pool
	cache map[uint32]cachedLocations
	pool  map[string][]pooledFid // by collection/replication
}

// pooledFid is an assigned, reserved file id not yet written.
type pooledFid struct {
	fid, url, auth string
	expires        time.Time
}

// poolTTL bounds how long an assigned id is kept: well inside the token's
// life and the upload lease, and short enough that a volume turning
// read-only is noticed soon.
const poolTTL = 10 * time.Second

// nextFid returns an assigned and reserved file id for a write.
func (d *DataClient) nextFid(ctx context.Context, collection, replication string) (pooledFid, error) {
	key := collection + "/" + replication
	d.mu.Lock()
	for len(d.pool[key]) > 0 {
		p := d.pool[key][0]
		d.pool[key] = d.pool[key][1:]
		if time.Now().Before(p.expires) {
			d.mu.Unlock()
			return p, nil
		}
	}
	d.mu.Unlock()
	count := uint32(max(d.Batch, 1))
	a, err := d.Assign(ctx, &pb.AssignRequest{Count: count, Collection: collection, Replication: replication})
	if err != nil {
		return pooledFid{}, err
	}
	base, err := fid.Parse(a.Fid)
	if err != nil {
		return pooledFid{}, err
	}
	n := max(a.Count, 1)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fid.FileID{Volume: base.Volume, Key: base.Key + uint64(i), Cookie: base.Cookie}.String()
	}
	if d.Reserve != nil {
		if err := d.Reserve(ctx, ids); err != nil {
			return pooledFid{}, err
		}
	}
	exp := time.Now().Add(poolTTL)
	if len(ids) > 1 {
		d.mu.Lock()
		if d.pool == nil {
			d.pool = make(map[string][]pooledFid)
		}
		for _, id := range ids[1:] {
			d.pool[key] = append(d.pool[key], pooledFid{fid: id, url: a.Url, auth: a.GetAuth(), expires: exp})
		}
		d.mu.Unlock()
	}
	return pooledFid{fid: ids[0], url: a.Url, auth: a.GetAuth(), expires: exp}, nil
}

// dropPool forgets the pooled ids of collection/replication (their volume
// refused a write); the filer's GC deletes them when their lease ends.
func (d *DataClient) dropPool(collection, replication string) {
	d.mu.Lock()
	delete(d.pool, collection+"/"+replication)
	d.mu.Unlock()
}

type cachedLocations struct {
	urls []string
	auth string // read token from the lookup, if reads need one
	at   time.Time
}

const locationTTL = 10 * time.Second

// Write stores data as one new needle and returns its file id. It returns
// only once every replica has the needle on stable storage.
func (d *DataClient) Write(ctx context.Context, data []byte, collection, replication string) (string, error) {
	var lastErr error
	// A master that has just been elected refuses assigns for a few pulses
	// while volume servers report in: keep asking for a while. A failed
	// upload is retried (on a fresh file id) a few times only, so that lost
	// replicas are reported soon.
	assignDeadline := time.Now().Add(assignPatience)
	for attempt, puts := 0, 0; puts < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(min(time.Duration(attempt*attempt)*100*time.Millisecond, time.Second)):
			}
		}
		a, err := d.nextFid(ctx, collection, replication)
		if err != nil {
			lastErr = err
			if time.Now().After(assignDeadline) {
				break
			}
			continue
		}
		puts++
		code, body, err := d.do(ctx, http.MethodPut, a.url, a.fid, bytes.NewReader(data), "", a.auth)
		if err == nil && code == http.StatusCreated {
			return a.fid, nil
		}
		d.dropPool(collection, replication)
		if err == nil {
			err = fmt.Errorf("volume server %s answered %d: %s", a.url, code, strings.TrimSpace(string(body)))
			if code == http.StatusInsufficientStorage {
				return "", fmt.Errorf("%w: %w", ErrNoSpace, err)
			}
		}
		lastErr = err
	}
	return "", fmt.Errorf("%w: write %d bytes: %w", ErrData, len(data), lastErr)
}

// assignPatience is how long Write keeps asking for a file id.
const assignPatience = 15 * time.Second

// ErrNoSpace means the volume servers are out of space.
var ErrNoSpace = errors.New("filer: volume servers out of space")

// Read returns n bytes of needle id starting at off (fewer at its end).
func (d *DataClient) Read(ctx context.Context, id string, off, n int64) ([]byte, error) {
	return d.ReadBuf(ctx, id, off, n, nil)
}

// ReadBuf is Read that reads the volume server's answer into buf's array
// when it fits in cap(buf) (a caller's buffer to use again), and into a
// new one otherwise. Whatever buf held is overwritten.
func (d *DataClient) ReadBuf(ctx context.Context, id string, off, n int64, buf []byte) ([]byte, error) {
	f, err := fid.Parse(id)
	if err != nil {
		return nil, err
	}
	if f.Inline() {
		if d.Inline == nil {
			return nil, fmt.Errorf("%w: %s is inline data, held by the filer, and this client cannot read it", ErrData, id)
		}
		return d.Inline(ctx, id, off, n)
	}
	var errs []string
	for pass := range 2 {
		// A second pass looks the volume up again, which also renews a
		// read token that expired.
		urls, auth, err := d.locations(ctx, f.Volume, pass > 0)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if d.Tokens != nil {
			if auth, err = d.Tokens.SignRead(f.Volume); err != nil {
				return nil, err
			}
		}
		for _, u := range urls {
			code, body, err := d.doBuf(ctx, http.MethodGet, u, id, nil, fmt.Sprintf("bytes=%d-%d", off, off+n-1), auth, buf)
			switch {
			case err != nil:
				errs = append(errs, err.Error())
			case code == http.StatusOK:
				if off < int64(len(body)) {
					body = body[off:]
				} else {
					body = nil
				}
				return body[:min(int64(len(body)), n)], nil
			case code == http.StatusPartialContent:
				return body, nil
			case code == http.StatusRequestedRangeNotSatisfiable:
				return nil, nil
			default:
				errs = append(errs, fmt.Sprintf("%s: %d %s", u, code, strings.TrimSpace(string(body))))
			}
		}
	}
	return nil, fmt.Errorf("%w: read needle %s: %s", ErrData, id, strings.Join(errs, "; "))
}

// Delete removes needle id; a needle already gone counts as deleted. It
// asks the replicas it knows of first (a lookup per delete was a master
// round trip per garbage needle), and looks the volume up again only if
// none of them took the delete or answered that the needle is gone.
func (d *DataClient) Delete(ctx context.Context, id string) error {
	f, err := fid.Parse(id)
	if err != nil {
		return err
	}
	if f.Inline() {
		return fmt.Errorf("%w: %s is inline data, deleted by the filer with its last reference, not on a volume server", ErrData, id)
	}
	auth, err := d.Tokens.SignWrite(f, 1)
	if err != nil {
		return err
	}
	var errs []string
	for pass := range 2 {
		urls, _, err := d.locations(ctx, f.Volume, pass > 0)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, u := range urls {
			code, body, err := d.do(ctx, http.MethodDelete, u, id, nil, "", auth)
			// Not found counts only from fresh locations: from a
			// cached one it may mean the volume moved away.
			if err == nil && (code == http.StatusAccepted || code == http.StatusNotFound && pass > 0) {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("%d %s", code, strings.TrimSpace(string(body)))
			}
			errs = append(errs, fmt.Sprintf("%s: %v", u, err))
		}
	}
	return fmt.Errorf("%w: delete needle %s: %s", ErrData, id, strings.Join(errs, "; "))
}

// locations returns the replicas of volume vid and the lookup's read token.
func (d *DataClient) locations(ctx context.Context, vid uint32, fresh bool) ([]string, string, error) {
	d.mu.Lock()
	c, ok := d.cache[vid]
	d.mu.Unlock()
	if ok && !fresh && time.Since(c.at) < locationTTL {
		return c.urls, c.auth, nil
	}
	resp, err := d.Lookup(ctx, vid)
	if err != nil {
		return nil, "", fmt.Errorf("lookup volume %d: %w", vid, err)
	}
	var urls []string
	for _, l := range resp.Locations {
		urls = append(urls, l.Url)
	}
	if len(urls) == 0 {
		return nil, "", fmt.Errorf("volume %d has no live replica", vid)
	}
	d.mu.Lock()
	if d.cache == nil {
		d.cache = make(map[uint32]cachedLocations)
	}
	d.cache[vid] = cachedLocations{urls: urls, auth: resp.GetAuth(), at: time.Now()}
	d.mu.Unlock()
	return urls, resp.GetAuth(), nil
}

func (d *DataClient) do(ctx context.Context, method, host, id string, body io.Reader, rng, auth string) (int, []byte, error) {
	return d.doBuf(ctx, method, host, id, body, rng, auth, nil)
}

// doBuf is do reading the response body into buf's array when its
// announced length fits in cap(buf).
func (d *DataClient) doBuf(ctx context.Context, method, host, id string, body io.Reader, rng, auth string, buf []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.Scheme+"://"+host+"/"+id, body)
	if err != nil {
		return 0, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	if r, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(r.Len())
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if n := resp.ContentLength; n > 0 && n <= int64(cap(buf)) {
		b := buf[:n]
		_, err := io.ReadFull(resp.Body, b)
		return resp.StatusCode, b, err
	}
	if n := resp.ContentLength; n > 0 && n <= maxPrealloc {
		// One allocation of the announced size instead of io.ReadAll's
		// growing copies (needle reads are up to a few MiB).
		b := make([]byte, n)
		_, err := io.ReadFull(resp.Body, b)
		return resp.StatusCode, b, err
	}
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// maxPrealloc bounds the response body allocated up front from its
// Content-Length.
const maxPrealloc = 64 << 20

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
