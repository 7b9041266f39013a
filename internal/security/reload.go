package security

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// fileStamp identifies one version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func (c *Config) stamps() [3]fileStamp {
	var out [3]fileStamp
	for i, p := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		if fi, err := os.Stat(p); err == nil {
			out[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	return out
}

// ReloadLogged reloads c and logs the outcome for the operator.
func (c *Config) ReloadLogged(log *slog.Logger, why string) error {
	if err := c.Reload(); err != nil {
		log.Error("could not reload the TLS certificate; still using the previous one", "cert", c.CertFile, "why", why, "err", err)
		return err
	}
	leaf := c.Certificate().Leaf
	log.Info("reloaded the TLS certificate and CA", "cert", c.CertFile, "ca", c.CAFile, "why", why,
		"serial", leaf.SerialNumber.Text(16), "issuer", leaf.Issuer.CommonName, "not_after", leaf.NotAfter)
	return nil
}

// WatchFiles checks c's CA, certificate and key files every interval until
// ctx ends and reloads them when one changed. A failed reload (say, the
// certificate was replaced but not yet its key) is retried at the next
// check.
func (c *Config) WatchFiles(ctx context.Context, every time.Duration, log *slog.Logger) {
	last := c.stamps()
	t := time.NewTicker(every)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.stamps()
		if now == last && !failed {
			continue
		}
		last = now
		failed = c.ReloadLogged(log, "CA, certificate or key file changed") != nil
	}
}
