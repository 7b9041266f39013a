package security

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-storage/cairn/internal/fid"
)

func testTokens(t testing.TB, read bool) *Tokens {
	t.Helper()
	tk, err := NewTokens([]byte("0123456789abcdef0123456789abcdef"), time.Minute, read)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestTokenCoversAssignedIDs(t *testing.T) {
	tk := testTokens(t, false)
	id := fid.FileID{Volume: 3, Key: 100, Cookie: 0xdeadbeef}
	tok, err := tk.SignWrite(id, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []uint64{100, 101, 102} {
		if err := tk.Verify("Bearer "+tok, OpWrite, fid.FileID{Volume: 3, Key: k, Cookie: 0xdeadbeef}); err != nil {
			t.Errorf("key %d of the batch refused: %v", k, err)
		}
	}
	refused := map[string]fid.FileID{
		"key past the batch":   {Volume: 3, Key: 103, Cookie: 0xdeadbeef},
		"key before the batch": {Volume: 3, Key: 99, Cookie: 0xdeadbeef},
		"other cookie":         {Volume: 3, Key: 100, Cookie: 1},
		"other volume":         {Volume: 4, Key: 100, Cookie: 0xdeadbeef},
	}
	for name, other := range refused {
		if err := tk.Verify(tok, OpWrite, other); !errors.Is(err, ErrToken) {
			t.Errorf("%s: %v, want ErrToken", name, err)
		}
	}
	if err := tk.Verify("", OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("no token: %v", err)
	}
	// Reads need no token unless configured.
	if err := tk.Verify("", OpRead, id); err != nil {
		t.Errorf("read without token with read=false: %v", err)
	}
}

func TestTokenForgedExpiredAndRead(t *testing.T) {
	tk := testTokens(t, true)
	id := fid.FileID{Volume: 7, Key: 1, Cookie: 2}
	other, _ := NewTokens([]byte("another key of at least 16 bytes"), time.Minute, true)
	forged, _ := other.SignWrite(id, 1)
	if err := tk.Verify(forged, OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("token signed with another key: %v", err)
	}
	good, _ := tk.SignWrite(id, 1)
	parts := strings.Split(good, ".")
	if err := tk.Verify(parts[0]+"."+parts[1]+".", OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("unsigned token: %v", err)
	}
	// alg=none is never accepted.
	if err := tk.Verify("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."+parts[1]+".", OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("alg none: %v", err)
	}
	past := tk.now
	tk.now = func() time.Time { return past().Add(-2 * time.Minute) }
	expired, _ := tk.SignWrite(id, 1)
	tk.now = past
	if err := tk.Verify(expired, OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("expired token: %v", err)
	}
	rd, _ := tk.SignRead(7)
	if err := tk.Verify(rd, OpRead, id); err != nil {
		t.Errorf("read token refused: %v", err)
	}
	if err := tk.Verify(rd, OpWrite, id); !errors.Is(err, ErrToken) {
		t.Errorf("read token allowed a write: %v", err)
	}
	if err := tk.Verify("", OpRead, id); !errors.Is(err, ErrToken) {
		t.Errorf("read without token with read=true: %v", err)
	}
	var off *Tokens
	if s, _ := off.SignWrite(id, 1); s != "" || off.Verify("", OpWrite, id) != nil {
		t.Error("nil Tokens must sign nothing and accept everything")
	}
}

// FuzzTokenDecode feeds arbitrary strings to the token decoder: it must
// never panic and never accept anything it did not sign.
func FuzzTokenDecode(f *testing.F) {
	tk := testTokens(f, true)
	good, _ := tk.SignWrite(fid.FileID{Volume: 1, Key: 2, Cookie: 3}, 1)
	for _, s := range []string{"", "Bearer ", good, "Bearer " + good, good + "x", "a.b.c", "..", strings.Repeat("A", 3000),
		"eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.eyJvcCI6InciLCJleHAiOjF9.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := tk.Decode(s)
		if err != nil {
			if !errors.Is(err, ErrToken) {
				t.Fatalf("error not wrapping ErrToken: %v", err)
			}
			return
		}
		trimmed := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "Bearer "))
		if trimmed != good {
			// Only re-encodings of a signed token may pass; check its claims.
			if c.Vol != 1 || c.Key != 2 || c.Cookie != 3 {
				t.Fatalf("accepted a token it did not sign: %q -> %+v", s, c)
			}
		}
	})
}
