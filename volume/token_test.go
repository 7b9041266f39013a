package volume

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
	"github.com/cairn-storage/cairn/internal/security"
	"github.com/cairn-storage/cairn/internal/testutil"
)

func dataRequest(t *testing.T, method, url string, id fid.FileID, body []byte, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+url+"/"+id.String(), bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDataPathTokens runs two volume servers replicating a volume with
// tokens on: a write with the assign's token lands on both (replication
// itself needs none, and a write forwarded to the primary keeps its token),
// and a write or delete with no token, a forged, an expired or another
// file's token is refused with 401 and changes nothing.
func TestDataPathTokens(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	tokens, err := security.NewTokens(key, time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	withTokens := func(c *Config) { c.Tokens = tokens }
	ipA := testutil.LoopbackIP(t, 8080, 18080)
	ipB := testutil.LoopbackIP(t, 8080, 18080)
	urlA, urlB := net.JoinHostPort(ipA, "8080"), net.JoinHostPort(ipB, "8080")
	master := startFakeMaster(t, []string{urlA, urlB})
	a := startServer(t, ipA, t.TempDir(), master, withTokens)
	b := startServer(t, ipB, t.TempDir(), master, withTokens)
	for _, s := range []*Server{a.s, b.s} {
		if _, err := s.store.Allocate(9, "", "001"); err != nil {
			t.Fatal(err)
		}
		s.markBehind(9, "test start")
	}
	testutil.WaitFor(t, 20*time.Second, "volume 9 in sync on both", func() error {
		for _, s := range []*Server{a.s, b.s} {
			if why, behind := s.behind(9); behind {
				return fmt.Errorf("%s: %s", s.URL(), why)
			}
		}
		return nil
	})

	id := fid.FileID{Volume: 9, Key: 0x10, Cookie: 0x1234}
	tok, _ := tokens.SignWrite(id, 1)
	if code, body := dataRequest(t, http.MethodPut, urlB, id, []byte("signed"), tok); code != http.StatusCreated {
		t.Fatalf("write with a valid token through the secondary: %d %s", code, body)
	}

	other, _ := security.NewTokens([]byte("a different cluster key, 32 b.."), time.Minute, true)
	forged, _ := other.SignWrite(id, 1)
	past, _ := security.NewTokens(key, time.Nanosecond, true)
	expired, _ := past.SignWrite(id, 1)
	time.Sleep(3 * time.Second) // past the verifier's 2s leeway
	otherID := fid.FileID{Volume: 9, Key: 0x11, Cookie: 0x1234}
	otherTok, _ := tokens.SignWrite(otherID, 1)
	readTok, _ := tokens.SignRead(9)
	refused := map[string]string{
		"no token": "", "forged token": forged, "expired token": expired,
		"another file's token": otherTok, "read token": readTok, "garbage": "not.a.jwt",
	}
	for name, bad := range refused {
		for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
			code, body := dataRequest(t, m, urlA, id, []byte("overwrite"), bad)
			if code != http.StatusUnauthorized || !strings.Contains(body, "token") {
				t.Errorf("%s %s: %d %s, want 401 naming the token", m, name, code, body)
			}
		}
	}
	for _, s := range []*Server{a.s, b.s} {
		v, _ := s.store.Get(9)
		n, err := v.Read(id.Key, id.Cookie)
		if err != nil || string(n.Data) != "signed" {
			t.Fatalf("%s after refused requests: %v %+v, want the signed write intact", s.URL(), err, n)
		}
		if _, err := v.Read(otherID.Key, otherID.Cookie); err == nil {
			t.Fatalf("%s holds a needle nobody was allowed to write", s.URL())
		}
	}

	// Reads need a token too ([jwt] read = true): the volume's read token
	// or the write token of the file.
	if code, _ := dataRequest(t, http.MethodGet, urlA, id, nil, ""); code != http.StatusUnauthorized {
		t.Errorf("read without a token: %d, want 401", code)
	}
	for _, good := range []string{readTok, tok} {
		if code, body := dataRequest(t, http.MethodGet, urlA, id, nil, good); code != http.StatusOK || body != "signed" {
			t.Errorf("read with a token: %d %q", code, body)
		}
	}
	if code, body := dataRequest(t, http.MethodDelete, urlA, id, nil, tok); code != http.StatusAccepted {
		t.Fatalf("delete with the token: %d %s", code, body)
	}
}
