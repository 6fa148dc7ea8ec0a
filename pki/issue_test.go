package pki_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// newCA issues a CA or fails the test.
func newCA(t *testing.T, cn string, opts ...pki.Option) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue signs a leaf or fails the test.
func issue(t *testing.T, ca *pki.CA, cn string, role pki.Role, opts ...pki.Option) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(cn, role, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestIssueKeyTypes(t *testing.T) {
	tests := []struct {
		kt    pki.KeyType
		check func(any) bool
	}{
		{"", func(k any) bool { p, ok := k.(*ecdsa.PublicKey); return ok && p.Curve == elliptic.P256() }},
		{pki.KeyECDSAP256, func(k any) bool { p, ok := k.(*ecdsa.PublicKey); return ok && p.Curve == elliptic.P256() }},
		{pki.KeyRSA2048, func(k any) bool { p, ok := k.(*rsa.PublicKey); return ok && p.N.BitLen() == 2048 }},
		{pki.KeyEd25519, func(k any) bool { _, ok := k.(ed25519.PublicKey); return ok }},
	}
	for _, tt := range tests {
		t.Run(string(tt.kt), func(t *testing.T) {
			var opts []pki.Option
			if tt.kt != "" {
				opts = append(opts, pki.WithKeyType(tt.kt))
			}
			ca := newCA(t, "CA "+string(tt.kt), opts...)
			if !ca.Cert.IsCA || !tt.check(ca.Cert.PublicKey) {
				t.Errorf("CA: IsCA=%v key %T", ca.Cert.IsCA, ca.Cert.PublicKey)
			}
			l := issue(t, ca, "leaf", pki.RoleClient, opts...)
			if !tt.check(l.Cert.PublicKey) {
				t.Errorf("leaf key is %T", l.Cert.PublicKey)
			}
			if _, err := l.Cert.Verify(x509.VerifyOptions{Roots: pki.Pool([]*x509.Certificate{ca.Cert}), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("leaf does not verify against its CA: %v", err)
			}
			// The PEM forms parse back to the same material.
			key, err := pki.ParseKey(l.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !pki.PublicKeysEqual(l.Cert.PublicKey, key.Public()) {
				t.Error("KeyPEM does not hold the leaf's key")
			}
			if _, err := l.TLSCertificate().Leaf.Verify(x509.VerifyOptions{Roots: pki.Pool([]*x509.Certificate{ca.Cert}), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := pki.NewCA("x", pki.WithKeyType("dsa")); err == nil || strings.Count(err.Error(), "pki:") != 1 {
		t.Errorf("NewCA with an unknown key type: %v, want one prefixed error", err)
	}
	if _, err := newCA(t, "CA").Issue("x", pki.RoleClient, pki.WithKeyType("dsa")); err == nil || strings.Count(err.Error(), "pki:") != 1 {
		t.Errorf("Issue with an unknown key type: %v, want one prefixed error", err)
	}
}

func TestIssueRoleSANsValidity(t *testing.T) {
	ca := newCA(t, "CA")
	uri, _ := url.Parse("spiffe://example.org/orders")
	nb := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	na := nb.Add(48 * time.Hour)
	srv := issue(t, ca, "nats-0", pki.RoleServer,
		pki.WithDNSNames("nats-0.nats", "nats"), pki.WithIPs(net.ParseIP("127.0.0.1")),
		pki.WithURIs(uri), pki.WithEmails("ops@example.org"), pki.WithValidity(nb, na))
	c := srv.Cert
	if c.Subject.CommonName != "nats-0" || c.IsCA {
		t.Errorf("subject %q IsCA %v", c.Subject, c.IsCA)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("server EKU = %v", c.ExtKeyUsage)
	}
	if len(c.DNSNames) != 2 || c.DNSNames[1] != "nats" || len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) ||
		len(c.URIs) != 1 || c.URIs[0].String() != uri.String() || len(c.EmailAddresses) != 1 {
		t.Errorf("SANs: dns %v ip %v uri %v email %v", c.DNSNames, c.IPAddresses, c.URIs, c.EmailAddresses)
	}
	if !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) {
		t.Errorf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, nb, na)
	}

	cl := issue(t, ca, "orders-7", pki.RoleClient, pki.WithLifetime(time.Hour))
	if len(cl.Cert.ExtKeyUsage) != 1 || cl.Cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("client EKU = %v", cl.Cert.ExtKeyUsage)
	}
	if life := cl.Cert.NotAfter.Sub(time.Now()); life < 50*time.Minute || life > 62*time.Minute {
		t.Errorf("WithLifetime(1h) left %s", life)
	}
	if !cl.Cert.NotBefore.Before(time.Now()) {
		t.Error("a fresh leaf is not valid yet")
	}
	both := issue(t, ca, "both", pki.RoleClient, pki.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	if len(both.Cert.ExtKeyUsage) != 2 {
		t.Errorf("extra EKU: %v", both.Cert.ExtKeyUsage)
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"client", "server"} {
		if r, err := pki.ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	if _, err := pki.ParseRole("peer"); err == nil {
		t.Error("ParseRole accepted peer")
	}
}

func TestWriteFilesModesAndCAFromFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := ca.WriteFiles(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	l := issue(t, ca, "leaf", pki.RoleClient)
	cert, key := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf-key.pem")
	if err := l.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{caCert: 0o644, caKey: 0o600, cert: 0o644, key: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %#o, want %#o", filepath.Base(path), st.Mode().Perm(), want)
		}
	}
	loaded, err := pki.LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("LoadCA read another certificate")
	}
	// A loaded CA issues leaves that verify against the original.
	l2 := issue(t, loaded, "leaf2", pki.RoleServer, pki.WithDNSNames("x"))
	if err := l2.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Error(err)
	}
	if _, err := pki.LoadCA(cert, key); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("LoadCA(leaf) = %v, want ErrNotCA", err)
	}
	other := newCA(t, "other")
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := pki.WriteFileAtomic(otherKey, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadCA(caCert, otherKey); !errors.Is(err, pki.ErrKeyMismatch) {
		t.Errorf("LoadCA(mismatched key) = %v, want ErrKeyMismatch", err)
	}
	if _, err := pki.LoadCA(filepath.Join(dir, "missing.pem"), caKey); err == nil {
		t.Error("LoadCA of a missing file succeeded")
	}
}
