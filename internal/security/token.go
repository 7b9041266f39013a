package security

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairn-storage/cairn/internal/fid"
)

// DefaultTokenTTL is how long a data-path token stays valid unless the
// security file says otherwise.
const DefaultTokenTTL = 60 * time.Second

// maxTokenLen bounds the tokens Verify looks at; ours are ~250 bytes.
const maxTokenLen = 2048

// ErrToken is wrapped by every refusal of a data-path token. Volume servers
// answer 401 for it.
var ErrToken = errors.New("security: data-path token refused")

// Token operations. A write token allows PUT, POST and DELETE of the file
// ids it covers; a read token allows GET and HEAD of any needle of its
// volume.
const (
	OpWrite = "w"
	OpRead  = "r"
)

// Claims is what a data-path token says. A write token covers the file ids
// Key .. Key+Count-1 of volume Vol with cookie Cookie (one assign with
// count > 1 hands out consecutive keys with one cookie).
type Claims struct {
	Op     string `json:"op"`
	Vol    uint32 `json:"vol"`
	Key    uint64 `json:"key,omitempty"`
	Count  uint32 `json:"n,omitempty"`
	Cookie uint32 `json:"ck,omitempty"`
	jwt.RegisteredClaims
}

// Tokens signs and verifies data-path tokens (JWT, HS256) with the cluster
// key. A nil *Tokens means tokens are off: Sign* return "" and Verify
// accepts everything. Safe for concurrent use.
type Tokens struct {
	key []byte
	// TTL is the lifetime of the tokens this signs.
	TTL time.Duration
	// Read, when set, makes reads require a token too.
	Read bool
	// now is the clock (tests move it).
	now func() time.Time
}

// NewTokens returns a signer and verifier for key (at least 16 bytes).
func NewTokens(key []byte, ttl time.Duration, read bool) (*Tokens, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("%w: jwt signing key has %d bytes, want at least 16", ErrConfig, len(key))
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return &Tokens{key: append([]byte(nil), key...), TTL: ttl, Read: read, now: time.Now}, nil
}

// tokensFromFile builds the Tokens of a security file's [jwt] table, nil
// when it names no key.
func tokensFromFile(s JWTSettings) (*Tokens, error) {
	if s.SigningKey == "" {
		if s.Read {
			return nil, fmt.Errorf("%w: [jwt] read = true needs a signing_key", ErrConfig)
		}
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(s.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("%w: [jwt] signing_key is not base64: %w", ErrConfig, err)
	}
	var ttl time.Duration
	if s.TTL != "" {
		if ttl, err = time.ParseDuration(s.TTL); err != nil || ttl <= 0 {
			return nil, fmt.Errorf("%w: [jwt] ttl %q is not a positive duration like \"60s\"", ErrConfig, s.TTL)
		}
	}
	return NewTokens(key, ttl, s.Read)
}

// SignWrite returns a token allowing writes and deletes of the count file
// ids starting at id (count 0 counts as 1).
func (t *Tokens) SignWrite(id fid.FileID, count uint32) (string, error) {
	if t == nil {
		return "", nil
	}
	return t.sign(Claims{Op: OpWrite, Vol: id.Volume, Key: id.Key, Count: max(count, 1), Cookie: id.Cookie})
}

// SignRead returns a token allowing reads of any needle of volume vol, or ""
// when reads need no token.
func (t *Tokens) SignRead(vol uint32) (string, error) {
	if t == nil || !t.Read {
		return "", nil
	}
	return t.sign(Claims{Op: OpRead, Vol: vol})
}

func (t *Tokens) sign(c Claims) (string, error) {
	now := t.now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(t.TTL))
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", fmt.Errorf("security: sign token: %w", err)
	}
	return s, nil
}

// Verify checks that token (a bare JWT or "Bearer <JWT>") is signed with
// the cluster key, unexpired and covers op on id. Reads pass without a
// token unless t.Read. Every refusal wraps ErrToken.
func (t *Tokens) Verify(token string, op string, id fid.FileID) error {
	if t == nil || (op == OpRead && !t.Read) {
		return nil
	}
	c, err := t.Decode(token)
	if err != nil {
		return err
	}
	if c.Vol != id.Volume {
		return fmt.Errorf("%w: token is for volume %d, not %d", ErrToken, c.Vol, id.Volume)
	}
	switch {
	case c.Op == OpRead && op == OpRead:
		return nil
	case c.Op == OpWrite:
		// A write token also allows reading the ids it covers.
		if c.Cookie != id.Cookie || id.Key < c.Key || id.Key-c.Key >= uint64(max(c.Count, 1)) {
			return fmt.Errorf("%w: token does not cover file id %s", ErrToken, id)
		}
		return nil
	}
	return fmt.Errorf("%w: a %q token does not allow %q", ErrToken, c.Op, op)
}

// Decode checks token's signature and expiry and returns its claims.
func (t *Tokens) Decode(token string) (*Claims, error) {
	token = strings.TrimSpace(token)
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		token = strings.TrimSpace(token[7:])
	}
	if token == "" {
		return nil, fmt.Errorf("%w: no token; send Authorization: Bearer <token from the assign>", ErrToken)
	}
	if len(token) > maxTokenLen {
		return nil, fmt.Errorf("%w: token of %d bytes is too long", ErrToken, len(token))
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(t.now), jwt.WithLeeway(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if c.Op != OpRead && c.Op != OpWrite {
		return nil, fmt.Errorf("%w: unknown operation %q", ErrToken, c.Op)
	}
	return &c, nil
}
