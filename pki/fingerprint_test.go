package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/pki"
)

// TestFingerprintsMatchNATSServer connects clients with each key type to a
// real nats-server that verifies client certificates, and compares our
// fingerprints with the server's own tls_peer_certs in connz.
func TestFingerprintsMatchNATSServer(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "fingerprint CA")
	srvLeaf := issue(t, ca, "nats", pki.RoleServer, pki.WithIPs(net.ParseIP("127.0.0.1")), pki.WithDNSNames("localhost"))
	caFile := filepath.Join(dir, "ca.pem")
	srvCert, srvKey := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := pki.WriteFileAtomic(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srvLeaf.WriteFiles(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLSConfig: tc, TLSVerify: true, TLSTimeout: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	want := map[string]*x509.Certificate{}
	for _, kt := range []pki.KeyType{pki.KeyECDSAP256, pki.KeyRSA2048, pki.KeyEd25519} {
		name := "client-" + string(kt)
		leaf := issue(t, ca, name, pki.RoleClient, pki.WithKeyType(kt))
		nc, err := nats.Connect(s.ClientURL(), nats.Name(name), nats.Timeout(30*time.Second),
			nats.Secure(&tls.Config{
				Certificates: []tls.Certificate{leaf.TLSCertificate()},
				RootCAs:      pki.Pool([]*x509.Certificate{ca.Cert}),
				MinVersion:   tls.VersionTLS12,
			}))
		if err != nil {
			t.Fatalf("%s: connect: %v", name, err)
		}
		t.Cleanup(nc.Close)
		want[name] = leaf.Cert
	}

	cz, err := s.Connz(&server.ConnzOptions{Username: true}) // ?auth=true on the HTTP monitor
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, ci := range cz.Conns {
		c, ok := want[ci.Name]
		if !ok {
			continue
		}
		seen++
		if len(ci.TLSPeerCerts) != 1 {
			t.Errorf("%s: server lists %d peer certificates, want 1", ci.Name, len(ci.TLSPeerCerts))
			continue
		}
		pc := ci.TLSPeerCerts[0]
		if got := pki.CertSHA256(c); got != pc.CertSha256 {
			t.Errorf("%s: CertSHA256 = %s, server says %s", ci.Name, got, pc.CertSha256)
		}
		if got := pki.SPKISHA256(c); got != pc.SubjectPKISha256 {
			t.Errorf("%s: SPKISHA256 = %s, server says %s", ci.Name, got, pc.SubjectPKISha256)
		}
		if got := pki.Describe(c); got.CertSHA256 != pc.CertSha256 || got.SPKISHA256 != pc.SubjectPKISha256 {
			t.Errorf("%s: Describe fingerprints differ from the server's", ci.Name)
		}
	}
	if seen != len(want) {
		t.Errorf("connz listed %d of our %d clients", seen, len(want))
	}
}
