package drill

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

// setup is the world a drill runs in: the client CAs before and after the
// rotation, the embedded cluster trusting the old one, and the harness's
// own identity.
type setup struct {
	dir     string
	oldCA   *pki.CA // issued the members' current leaves; trusted at start
	newCA   *pki.CA // issues the members' new leaves
	harness *pki.CA // issues the publisher's, requester's and floor probes' leaves
	cluster *embedded.Cluster
	// serverRoots verifies the servers; every member and the harness use it.
	serverRoots *x509.CertPool
	// serverCerts is the cert_sha256 of the leaf each server started with,
	// by server name: the proof must see another one once it is renewed.
	serverCerts map[string]string
}

// newSetup issues the CAs and starts the cluster. The servers trust the
// old client CA and the harness CA: the harness (publisher, requester,
// floor dialers) is the drill's instrument, not a member, and must keep
// working through the whole rotation.
func newSetup(dir string, servers int) (*setup, error) {
	s := &setup{dir: dir}
	var err error
	if s.oldCA, err = pki.NewCA("natscert drill client CA (old)"); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if s.newCA, err = pki.NewCA("natscert drill client CA (new)"); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if s.harness, err = pki.NewCA("natscert drill harness CA"); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	for _, ca := range []struct {
		name string
		ca   *pki.CA
	}{{"client-ca-old", s.oldCA}, {"client-ca-new", s.newCA}, {"harness-ca", s.harness}} {
		if err := ca.ca.WriteFiles(filepath.Join(dir, ca.name+".pem"), filepath.Join(dir, ca.name+"-key.pem")); err != nil {
			return nil, fmt.Errorf("drill: %w", err)
		}
	}
	trust, err := pki.Bundle(s.oldCA.CertPEM, s.harness.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	cdir := filepath.Join(dir, "servers")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	s.cluster, err = embedded.Start(embedded.Options{Dir: cdir, Servers: servers, ClientCA: trust})
	if err != nil {
		return nil, fmt.Errorf("drill: start cluster: %w", err)
	}
	s.serverRoots = pki.Pool([]*x509.Certificate{s.cluster.ServerCA.Cert})
	s.serverCerts = map[string]string{}
	for _, srv := range s.cluster.Servers {
		certs, err := pki.ReadCertificates(srv.CertFile)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("drill: %s: server certificate: %w", srv.Name, err)
		}
		s.serverCerts[srv.Name] = pki.CertSHA256(certs[0])
	}
	return s, nil
}

// harnessCert issues a leaf for one of the drill's own connections.
func (s *setup) harnessCert(name string) (tls.Certificate, error) {
	leaf, err := s.harness.Issue(name, pki.RoleClient)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("drill: %w", err)
	}
	return leaf.TLSCertificate(), nil
}

// harnessTLS is the TLS configuration of a harness connection. Session
// resumption stays off (no ClientSessionCache) so every dial is a full
// mTLS handshake, as the floor must measure.
func (s *setup) harnessTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      s.serverRoots,
		MinVersion:   tls.VersionTLS12,
	}
}

// url returns the client URL of server i, counting round the cluster.
func (s *setup) url(i int) string {
	return s.cluster.Servers[i%len(s.cluster.Servers)].ClientURL
}

func (s *setup) close() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}
