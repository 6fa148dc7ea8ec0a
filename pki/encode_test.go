package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natscert/natscert/pki"
)

func TestParseCertificates(t *testing.T) {
	a, b := newCA(t, "A"), newCA(t, "B")
	both := append(append([]byte{}, a.CertPEM...), b.CertPEM...)
	certs, err := pki.ParseCertificates(both)
	if err != nil || len(certs) != 2 || !certs[0].Equal(a.Cert) || !certs[1].Equal(b.Cert) {
		t.Fatalf("ParseCertificates(A+B) = %d certs, %v", len(certs), err)
	}
	// A key block among certificates is skipped, as in a combined file.
	withKey := append(append([]byte{}, a.KeyPEM...), a.CertPEM...)
	if certs, err := pki.ParseCertificates(withKey); err != nil || len(certs) != 1 {
		t.Errorf("key+cert: %d certs, %v", len(certs), err)
	}
	bad := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not PEM\n"),
		"key only":  a.KeyPEM,
		"truncated": a.CertPEM[:len(a.CertPEM)/2],
		// pem.Decode alone skips a broken block to reach the next good
		// one: these parsed as one certificate fewer.
		"half a block":    cat(a.CertPEM[:len(a.CertPEM)/2], b.CertPEM),
		"broken between":  cat(a.CertPEM, []byte("-----BEGIN CERTIFICATE-----\n"), b.CertPEM),
		"armor fragment":  cat(a.CertPEM, []byte("-----BEG"), b.CertPEM),
		"truncated after": cat(a.CertPEM, b.CertPEM[:40]),
	}
	for name, in := range bad {
		_, err := pki.ParseCertificates(in)
		if !errors.Is(err, pki.ErrNoPEM) {
			t.Errorf("%s: err = %v, want ErrNoPEM", name, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "pki: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
	line := fmt.Sprintf("line %d ", bytes.Count(a.CertPEM, []byte("\n"))+1)
	if _, err := pki.ParseCertificates(cat(a.CertPEM, []byte("-----BEG\n"), b.CertPEM)); err == nil || !strings.Contains(err.Error(), line) {
		t.Errorf("broken armor between blocks: %v, want its line named", err)
	}
	// Text outside blocks is fine, as openssl writes it and crypto/tls reads it.
	for name, in := range map[string][]byte{
		"bag attributes": cat([]byte("Bag Attributes\n    localKeyID: 01\nsubject=CN = A\n"), a.CertPEM, []byte("subject=CN = B\n"), b.CertPEM),
		"trailing text":  cat(a.CertPEM, b.CertPEM, []byte("end of bundle\n")),
	} {
		if certs, err := pki.ParseCertificates(in); err != nil || len(certs) != 2 {
			t.Errorf("%s: %d certs, %v", name, len(certs), err)
		}
	}
	// White space around and between blocks is fine.
	if certs, err := pki.ParseCertificates(cat([]byte("\n  \r\n"), a.CertPEM, []byte("\n\t\n"), b.CertPEM, []byte("\n\n"))); err != nil || len(certs) != 2 {
		t.Errorf("white space between blocks: %d certs, %v", len(certs), err)
	}
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	if _, err := pki.ParseCertificates(corrupt); err == nil {
		t.Error("a CERTIFICATE block that is not DER parsed")
	}
}

func TestParseKeyFormats(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	tests := map[string][]byte{
		"EC PRIVATE KEY":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"RSA PRIVATE KEY": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}),
		"PRIVATE KEY":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	for name, in := range tests {
		if _, err := pki.ParseKey(in); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := pki.ParseKey(newCA(t, "A").CertPEM); !errors.Is(err, pki.ErrNoPEM) {
		t.Errorf("ParseKey(cert) = %v, want ErrNoPEM", err)
	}
	if _, err := pki.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})); err == nil {
		t.Error("a corrupt key parsed")
	}
	for _, block := range []*pem.Block{
		{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")},
		{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte("opaque")},
	} {
		_, err := pki.ParseKey(pem.EncodeToMemory(block))
		if !errors.Is(err, pki.ErrEncryptedKey) || !strings.HasPrefix(err.Error(), "pki: ") {
			t.Errorf("%s: err = %v, want a prefixed ErrEncryptedKey", block.Type, err)
		}
	}
	if _, err := pki.ParseKey(cat([]byte("Bag Attributes\n"), tests["PRIVATE KEY"])); err != nil {
		t.Errorf("text before the key: %v, want it read as openssl writes it", err)
	}
	if _, err := pki.ParseKey(tests["PRIVATE KEY"][:60]); !errors.Is(err, pki.ErrNoPEM) {
		t.Errorf("a truncated key: %v, want ErrNoPEM", err)
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.pem")
	for i, data := range [][]byte{[]byte("one"), []byte("two")} {
		if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("write %d: read %q, %v", i, got, err)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// FuzzParse feeds arbitrary bytes to the PEM parsers: they must return an
// error or material, never panic, and a parsed certificate must fingerprint.
func FuzzParse(f *testing.F) {
	ca, err := pki.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM)
	f.Add(ca.KeyPEM)
	f.Add(append(append([]byte{}, ca.CertPEM...), ca.KeyPEM...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if certs, err := pki.ParseCertificates(data); err == nil {
			for _, c := range certs {
				_ = pki.CertSHA256(c) + pki.SPKISHA256(c)
				_ = pki.Describe(c)
			}
		}
		_, _ = pki.ParseKey(data)
		_, _ = pki.Bundle(data)
	})
}
