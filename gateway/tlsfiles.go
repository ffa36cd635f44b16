package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertFiles serves the TLS certificate in a pair of PEM files and picks
// up a new one when the files change, as they do when certbot or an ACME
// client renews them: new connections get the new certificate, with no
// restart and no signal. The files are looked at, on a handshake, at most
// once a second. A pair that does not load (a renewal caught half
// written, a key that does not match) is logged and the certificate in
// use is kept.
type CertFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

// fileStamp tells whether a file changed since it was loaded.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// LoadCertFiles loads the certificate chain in certPath and its private
// key in keyPath (PEM, as nginx takes them). It returns an error naming
// the file when either cannot be read or they do not form a pair.
func LoadCertFiles(certPath, keyPath string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &CertFiles{certPath: certPath, keyPath: keyPath, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertFiles) load() error {
	var stamp [2]fileStamp
	for i, p := range []string{c.certPath, c.keyPath} {
		s, err := stampOf(p)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		stamp[i] = s
	}
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("TLS: %s and %s: %w", c.certPath, c.keyPath, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS: %s: %w", c.certPath, err)
		}
	}
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// reloaded first when its files changed.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= time.Second {
		c.checked = time.Now()
		if c.changed() {
			// load replaces the certificate only when the new pair loads.
			if err := c.load(); err != nil {
				c.log.Warn("TLS certificate files changed but do not load; keeping the one in use", "err", err)
			} else {
				c.log.Info("TLS certificate reloaded", "subject", c.cert.Leaf.Subject.String(), "not_after", c.cert.Leaf.NotAfter)
			}
		}
	}
	return c.cert, nil
}

// changed reports whether either file differs from what was loaded. A
// file that cannot be stat'ed (mid-rename) counts as unchanged until it
// can.
func (c *CertFiles) changed() bool {
	for i, p := range []string{c.certPath, c.keyPath} {
		s, err := stampOf(p)
		if err != nil {
			return false
		}
		if !s.mod.Equal(c.stamp[i].mod) || s.size != c.stamp[i].size {
			return true
		}
	}
	return false
}

// TLSConfig is the server's TLS configuration over c: TLS 1.2 or later,
// HTTP/2 and HTTP/1.1 offered.
func (c *CertFiles) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate,
		NextProtos: []string{"h2", "http/1.1"}}
}
