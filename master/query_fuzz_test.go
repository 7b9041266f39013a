package master

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzAssignQuery feeds arbitrary query strings to /dir/assign's parser: it
// never panics, refuses with a 400 API error, and whatever it accepts is a
// request the rest of assign can act on.
func FuzzAssignQuery(f *testing.F) {
	for _, s := range []string{
		"", "count=1", "count=0", "count=65536", "count=65537", "count=-1", "count=4294967296", "count=1e3", "count=%00",
		"replication=001", "replication=0", "replication=999", "replication=00a", "replication=%2e%2e%2f",
		"collection=pics", "collection=../../etc", "collection=a%2Fb", "collection=" + strings.Repeat("a", 65),
		"collection=%00", "dataCenter=" + strings.Repeat("d", 300), "count=2&count=3", "count=1;replication=000",
		"replication=010&collection=x_y-z&count=64&dataCenter=dc1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // the HTTP server answers 400 for these before the parser
		}
		req, err := parseAssignQuery(q)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || httpStatus(err) != http.StatusBadRequest {
				t.Fatalf("%q: error %v is not a 400 API error", raw, err)
			}
			return
		}
		if req.Count > maxAssignCount {
			t.Fatalf("%q: accepted count %d", raw, req.Count)
		}
		if req.Replication != "" {
			if _, err := parsePlacement(req.Replication); err != nil {
				t.Fatalf("%q: accepted replication %q: %v", raw, req.Replication, err)
			}
		}
		if strings.ContainsAny(req.Collection, "/.\x00\\") || len(req.Collection) > maxCollectionLen {
			t.Fatalf("%q: accepted collection %q", raw, req.Collection)
		}
	})
}

// FuzzLookupQuery: /dir/lookup's parser never panics, refuses with 400,
// and what it accepts is a non-zero volume id.
func FuzzLookupQuery(f *testing.F) {
	for _, s := range []string{
		"", "volumeId=3", "volumeId=0", "volumeId=-1", "volumeId=4294967296", "volumeId=3,01637037d6",
		"fileId=/3,01637037d6.jpg", "volumeId=3/01637037d6", "volumeId=%2e%2e", "volumeId=+3", "volumeId=0x3",
		"volumeId=" + strings.Repeat("9", 100), "volumeId=%00", "volumeId=&fileId=7,01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		id, arg, err := parseLookupQuery(q)
		if err != nil {
			if httpStatus(err) != http.StatusBadRequest {
				t.Fatalf("%q: error %v is not a 400", raw, err)
			}
			return
		}
		if id == 0 || arg == "" {
			t.Fatalf("%q: accepted id %d from %q", raw, id, arg)
		}
	})
}

func TestAssignQueryRejects(t *testing.T) {
	for _, raw := range []string{"count=x", "count=65537", "replication=9", "collection=../x", "collection=a/b", "collection=a.b"} {
		q, _ := url.ParseQuery(raw)
		if _, err := parseAssignQuery(q); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
	q, _ := url.ParseQuery("count=5&replication=001&collection=ok_1")
	req, err := parseAssignQuery(q)
	if err != nil || req.Count != 5 || req.Replication != "001" || req.Collection != "ok_1" {
		t.Fatalf("valid query: %+v, %v", req, err)
	}
}
