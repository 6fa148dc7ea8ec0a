package material

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/natscert/natscert/pki"
)

// StaticSource serves material loaded once and never changes: the
// behaviour of a process that calls tls.LoadX509KeyPair at start-up.
type StaticSource struct {
	set Set
}

var (
	_ Source    = (*StaticSource)(nil)
	_ Currenter = (*StaticSource)(nil)
)

// NewStaticSource serves cert (which may be empty, for no client
// certificate) and roots (nil means the system roots).
func NewStaticSource(cert tls.Certificate, roots []*x509.Certificate) *StaticSource {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	s := &StaticSource{set: Set{Cert: cert, Snapshot: Snapshot{Generation: 1, LoadedAt: time.Now()}}}
	if roots != nil {
		s.set.Roots = pki.Pool(roots)
	}
	if cert.Leaf != nil {
		ci := pki.Describe(cert.Leaf)
		s.set.Snapshot.Leaf = &ci
	}
	for _, r := range roots {
		s.set.Snapshot.Roots = append(s.set.Snapshot.Roots, pki.Describe(r))
	}
	return s
}

// LoadStaticSource reads a key pair and an optional roots bundle once, as
// start-up-loaded clients do; it validates nothing beyond what crypto/tls
// checks, exactly like tls.LoadX509KeyPair.
func LoadStaticSource(certFile, keyFile, rootsFile string) (*StaticSource, error) {
	var cert tls.Certificate
	if certFile != "" || keyFile != "" {
		var err error
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("material: load key pair %s, %s: %w", certFile, keyFile, err)
		}
	}
	var roots []*x509.Certificate
	if rootsFile != "" {
		b, err := os.ReadFile(rootsFile)
		if err != nil {
			return nil, fmt.Errorf("material: %w", err)
		}
		roots, err = pki.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("material: roots %s: %w", rootsFile, err)
		}
	}
	s := NewStaticSource(cert, roots)
	s.set.Snapshot.CertFile, s.set.Snapshot.KeyFile, s.set.Snapshot.RootsFile = certFile, keyFile, rootsFile
	return s, nil
}

// ErrNoCertificate is returned by Cert when a source has no client certificate.
var ErrNoCertificate = errors.New("material: no certificate configured")

// Cert returns the certificate loaded at start.
func (s *StaticSource) Cert() (tls.Certificate, error) {
	if len(s.set.Cert.Certificate) == 0 {
		return tls.Certificate{}, ErrNoCertificate
	}
	return s.set.Cert, nil
}

// RootCAs returns the roots loaded at start (nil: system roots).
func (s *StaticSource) RootCAs() (*x509.CertPool, error) { return s.set.Roots, nil }

// Snapshot describes the material.
func (s *StaticSource) Snapshot() Snapshot { return s.set.Snapshot.clone() }

// Current returns the material loaded at start.
func (s *StaticSource) Current() Set {
	set := s.set
	set.Snapshot = set.Snapshot.clone()
	return set
}

// Subscribe never calls fn: static material never changes.
func (s *StaticSource) Subscribe(func(Event)) func() { return func() {} }

// Refresh does nothing: static material is never re-read.
func (s *StaticSource) Refresh(ctx context.Context) error { return ctx.Err() }

// Close does nothing.
func (s *StaticSource) Close() error { return nil }
