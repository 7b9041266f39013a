package security

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoadFile: any security file, for any role, either loads a complete
// configuration or fails with an error wrapping ErrConfig; nothing panics.
func FuzzLoadFile(f *testing.F) {
	dir := f.TempDir()
	if _, err := Init(dir, []string{"node1"}, time.Hour); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{FileName, ClientFileName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, RoleMaster)
		f.Add(b, RoleClient)
	}
	f.Add([]byte("ca = \"ca.pem\"\n[jwt]\nsigning_key = \"!!\"\n"), RoleFiler)
	f.Add([]byte("ca = \"ca.pem\"\n[jwt]\nread = true\n"), RoleVolume)
	f.Add([]byte("ca = \"/dev/null\"\n[client]\ncert = \"client.pem\"\nkey = \"client-key.pem\"\n"), RoleClient)
	f.Add([]byte("client_only = true\n"), RoleMaster)
	f.Add([]byte("[[x]]\n"), "nobody")
	f.Fuzz(func(t *testing.T, content []byte, role string) {
		p := filepath.Join(dir, "fuzz.toml")
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadFile(p, role)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("LoadFile error does not wrap ErrConfig: %v", err)
			}
			return
		}
		if c.Certificate() == nil || c.caPool() == nil || c.ServerTLS() == nil || c.ClientTLS() == nil {
			t.Fatalf("LoadFile(%q) succeeded with an incomplete configuration", content)
		}
	})
}
