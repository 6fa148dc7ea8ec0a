package material

import (
	"crypto"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// FuzzValidate feeds arbitrary cert, key, roots and issuer bytes to the
// function that turns them into a served set. It must never panic, reject
// with an error wrapping pki.ErrInvalid, and accept only a set whose key
// belongs to its certificate and whose roots are CAs.
//
//	go test -run=^$ -fuzz=FuzzValidate -fuzztime=10s ./material
func FuzzValidate(f *testing.F) {
	ca, err := pki.NewCA("Fuzz CA", pki.WithValidity(time.Unix(1.7e9, 0), time.Unix(2.1e9, 0)))
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := ca.Issue("fuzz client", pki.RoleClient, pki.WithValidity(time.Unix(1.7e9, 0), time.Unix(2.0e9, 0)))
	if err != nil {
		f.Fatal(err)
	}
	other, err := ca.Issue("other", pki.RoleClient)
	if err != nil {
		f.Fatal(err)
	}
	both := append(append([]byte{}, leaf.CertPEM...), ca.CertPEM...)
	f.Add(leaf.CertPEM, leaf.KeyPEM, ca.CertPEM, ca.CertPEM, uint8(0b1111))
	f.Add(leaf.CertPEM, leaf.KeyPEM, ca.CertPEM, []byte(nil), uint8(0b0111))
	f.Add(both, leaf.KeyPEM, []byte(nil), []byte(nil), uint8(0b0011))
	f.Add(leaf.CertPEM, other.KeyPEM, ca.CertPEM, ca.CertPEM, uint8(0b1111))
	f.Add([]byte(nil), []byte(nil), ca.CertPEM, []byte(nil), uint8(0b0100))
	f.Add(leaf.CertPEM[:len(leaf.CertPEM)/2], leaf.KeyPEM, leaf.CertPEM, []byte("garbage"), uint8(0b1111))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"), []byte{}, []byte{}, []byte{}, uint8(0b1111))

	now := time.Unix(1.8e9, 0)
	f.Fuzz(func(t *testing.T, cert, key, roots, issuer []byte, present uint8) {
		// present says which files are configured: an empty file and no
		// file are different things.
		pick := func(bit uint8, b []byte) []byte {
			if present&bit == 0 {
				return nil
			}
			if b == nil {
				return []byte{}
			}
			return b
		}
		c := pki.SetPEM{Cert: pick(1, cert), Key: pick(2, key), Roots: pick(4, roots), Issuer: pick(8, issuer)}
		s, fs, err := validate(c, pki.CheckOptions{Role: pki.RoleClient, Now: now, Skew: time.Minute})
		if err != nil {
			if !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("rejection %v does not wrap pki.ErrInvalid", err)
			}
			if s != nil {
				t.Fatal("a rejected set was returned")
			}
			if !fs.HasErrors() {
				t.Fatal("rejected without an error finding")
			}
			return
		}
		if fs.HasErrors() {
			t.Fatalf("accepted with error findings: %v", fs)
		}
		hasCert := len(s.Cert.Certificate) > 0
		if hasCert != (c.Cert != nil || c.Key != nil) {
			t.Fatalf("hasCert %v for cert %v key %v", hasCert, c.Cert != nil, c.Key != nil)
		}
		if hasCert {
			leaf := s.Cert.Leaf
			signer, ok := s.Cert.PrivateKey.(crypto.Signer)
			if !ok || leaf == nil {
				t.Fatal("accepted certificate without leaf or key")
			}
			if !pki.PublicKeysEqual(leaf.PublicKey, signer.Public()) {
				t.Fatal("accepted a key that does not match the certificate")
			}
			if now.After(leaf.NotAfter.Add(time.Minute)) || now.Add(time.Minute).Before(leaf.NotBefore) {
				t.Fatal("accepted a leaf outside its validity window")
			}
			if s.Snapshot.Leaf == nil || s.Snapshot.Leaf.CertSHA256 != pki.CertSHA256(leaf) {
				t.Fatal("snapshot does not describe the served leaf")
			}
			if c.Issuer != nil {
				issuers, _ := pki.ParseCertificates(c.Issuer)
				inter := x509.NewCertPool()
				for _, der := range s.Cert.Certificate[1:] {
					if ic, err := x509.ParseCertificate(der); err == nil {
						inter.AddCert(ic)
					}
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pki.Pool(issuers), Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					t.Fatalf("accepted a chain the issuer does not verify: %v", err)
				}
			}
		}
		if (s.Roots != nil) != (c.Roots != nil) {
			t.Fatal("roots pool presence differs from the roots file's")
		}
		for _, r := range s.Snapshot.Roots {
			if !r.IsCA {
				t.Fatal("accepted a roots bundle with a leaf")
			}
		}
	})
}
