package security

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// Roles name the components a security file has a certificate for.
const (
	RoleMaster = "master"
	RoleVolume = "volume"
	RoleFiler  = "filer"
	RoleClient = "client" // mounts, the CSI plugin, the shell, benchmarks
)

// Roles lists every role, in the order a security file presents them.
var Roles = []string{RoleMaster, RoleVolume, RoleFiler, RoleClient}

// File is the on-disk security configuration of a cluster (TOML). Paths are
// relative to the file's directory unless absolute.
//
//	ca = "ca.pem"
//	allowed_names = ["master", "volume", "filer", "client"]
//	[master]
//	cert = "master.pem"
//	key = "master-key.pem"
//	[volume] ...
type File struct {
	// ClientOnly marks a file made for clients (ClientFileName): a CA and
	// the client certificate, no server certificates and no signing key.
	// Servers refuse to start with it.
	ClientOnly   bool        `toml:"client_only,omitempty"`
	CA           string      `toml:"ca"`
	AllowedNames []string    `toml:"allowed_names"`
	Master       CertPair    `toml:"master"`
	Volume       CertPair    `toml:"volume"`
	Filer        CertPair    `toml:"filer"`
	Client       CertPair    `toml:"client"`
	JWT          JWTSettings `toml:"jwt"`
}

// CertPair names one component's certificate and key.
type CertPair struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// JWTSettings configures signed tokens on the data path (see Tokens).
type JWTSettings struct {
	// SigningKey is the base64 cluster key; empty turns tokens off.
	SigningKey string `toml:"signing_key"`
	// TTL is how long a token stays valid ("60s" when empty).
	TTL string `toml:"ttl,omitempty"`
	// Read makes reads require a token too.
	Read bool `toml:"read,omitempty"`
}

// LoadFile reads the security file at path and returns the configuration of
// role, with its certificate and the CA loaded.
func LoadFile(path, role string) (*Config, error) {
	var f File
	md, err := toml.DecodeFile(path, &f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w: %s: unknown setting %q", ErrConfig, path, und[0].String())
	}
	pair, err := f.pair(role)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if f.ClientOnly && role != RoleClient {
		return nil, fmt.Errorf("%w: %s is a client-only security file (no %s certificate, no signing key); start the %s with the cluster's %s",
			ErrConfig, path, role, roleNoun[role], FileName)
	}
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if f.CA == "" || pair.Cert == "" || pair.Key == "" {
		return nil, fmt.Errorf("%w: %s: the %s needs ca, and cert and key under [%s]; this file has none for it", ErrConfig, path, role, role)
	}
	c := &Config{CAFile: abs(f.CA), CertFile: abs(pair.Cert), KeyFile: abs(pair.Key), AllowedNames: f.AllowedNames}
	if c.Tokens, err = tokensFromFile(f.JWT); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	if err := c.Load(); err != nil {
		return nil, err
	}
	return c, nil
}

// roleNoun names the process a role runs, for messages.
var roleNoun = map[string]string{RoleMaster: "master", RoleVolume: "volume server", RoleFiler: "filer", RoleClient: "client"}

func (f *File) pair(role string) (CertPair, error) {
	switch role {
	case RoleMaster:
		return f.Master, nil
	case RoleVolume:
		return f.Volume, nil
	case RoleFiler:
		return f.Filer, nil
	case RoleClient:
		return f.Client, nil
	}
	return CertPair{}, fmt.Errorf("unknown role %q (want one of %v)", role, Roles)
}

// writeFile writes b to path with mode, creating it (never overwriting).
func writeFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
