// Package sanity runs csi-test's sanity suite (kubernetes-csi/csi-test/v5
// pkg/sanity) against the cairn CSI plugin in monolith mode, with a real
// cluster, a real mount service process and real FUSE mounts.
package sanity

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/cairn-storage/cairn/csi/csitest"
)

func TestMain(m *testing.M) { csitest.Main(m) }

func TestSanity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	env := csitest.Start(t)
	env.StartCSI(t)

	cfg := sanity.NewTestConfig()
	cfg.Address = env.Endpoint
	cfg.TargetPath = filepath.Join(env.Dir, "target")
	cfg.StagingPath = filepath.Join(env.Dir, "staging")
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 128 << 20
	cfg.IdempotentCount = 2
	cfg.CreateTargetDir = func(p string) (string, error) { return p, os.MkdirAll(p, 0o750) }
	cfg.CreateStagingDir = cfg.CreateTargetDir
	cfg.CheckPath = func(p string) (sanity.PathKind, error) {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return sanity.PathIsNotFound, nil
		case err != nil:
			return "", err
		case fi.IsDir():
			return sanity.PathIsDir, nil
		case fi.Mode().IsRegular():
			return sanity.PathIsFile, nil
		}
		return sanity.PathIsOther, nil
	}
	sanity.Test(t, cfg)
}
