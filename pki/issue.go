package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// KeyType names the algorithm of a generated private key.
type KeyType string

// Key types that NewCA and Issue can generate.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256" // the default
	KeyRSA2048   KeyType = "rsa-2048"
	KeyEd25519   KeyType = "ed25519"
)

// Role says what a leaf is for: verifying as a TLS client or as a TLS server.
type Role string

// Roles of a leaf certificate.
const (
	RoleClient Role = "client"
	RoleServer Role = "server"
)

// ParseRole reads "client" or "server".
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleClient, RoleServer:
		return Role(s), nil
	}
	return "", fmt.Errorf("pki: role %q: want client or server", s)
}

// extKeyUsage is the extended key usage a role needs.
func (r Role) extKeyUsage() x509.ExtKeyUsage {
	if r == RoleServer {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// Option adjusts a certificate being issued.
type Option func(*template)

type template struct {
	keyType   KeyType
	notBefore time.Time
	notAfter  time.Time
	dns       []string
	ips       []net.IP
	uris      []*url.URL
	emails    []string
	extraEKU  []x509.ExtKeyUsage
	org       string
}

// WithKeyType chooses the key algorithm (ECDSA P-256 by default).
func WithKeyType(k KeyType) Option { return func(t *template) { t.keyType = k } }

// WithValidity sets the validity window exactly.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(t *template) { t.notBefore, t.notAfter = notBefore, notAfter }
}

// WithLifetime makes the certificate valid from one minute ago for d.
func WithLifetime(d time.Duration) Option {
	return func(t *template) {
		t.notBefore = time.Now().Add(-time.Minute).Truncate(time.Second)
		t.notAfter = t.notBefore.Add(d + time.Minute)
	}
}

// WithDNSNames adds DNS subject alternative names.
func WithDNSNames(names ...string) Option {
	return func(t *template) { t.dns = append(t.dns, names...) }
}

// WithIPs adds IP subject alternative names.
func WithIPs(ips ...net.IP) Option { return func(t *template) { t.ips = append(t.ips, ips...) } }

// WithURIs adds URI subject alternative names (SPIFFE IDs, for example).
func WithURIs(uris ...*url.URL) Option { return func(t *template) { t.uris = append(t.uris, uris...) } }

// WithEmails adds e-mail subject alternative names.
func WithEmails(emails ...string) Option {
	return func(t *template) { t.emails = append(t.emails, emails...) }
}

// WithExtKeyUsage adds extended key usages beyond the role's own, e.g. a
// leaf that serves both as client and server.
func WithExtKeyUsage(u ...x509.ExtKeyUsage) Option {
	return func(t *template) { t.extraEKU = append(t.extraEKU, u...) }
}

// WithOrganization sets the subject's organization.
func WithOrganization(org string) Option { return func(t *template) { t.org = org } }

func newTemplate(defaultLifetime time.Duration, opts []Option) *template {
	t := &template{keyType: KeyECDSAP256}
	WithLifetime(defaultLifetime)(t)
	for _, o := range opts {
		o(t)
	}
	return t
}

// CA is a certificate authority with its private key.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// Leaf is an issued end-entity certificate with its private key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA valid for ten years unless told otherwise.
func NewCA(commonName string, opts ...Option) (*CA, error) {
	t := newTemplate(10*365*24*time.Hour, opts)
	tmpl := &x509.Certificate{
		Subject:               t.subject(commonName),
		NotBefore:             t.notBefore,
		NotAfter:              t.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	s, err := sign(t.keyType, tmpl, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA %q: %w", commonName, err)
	}
	return &CA{Cert: s.cert, Key: s.key, CertPEM: EncodeCertificates(s.cert), KeyPEM: s.keyPEM}, nil
}

// Issue signs a new leaf for role, valid for one year unless told otherwise.
func (ca *CA) Issue(commonName string, role Role, opts ...Option) (*Leaf, error) {
	t := newTemplate(365*24*time.Hour, opts)
	tmpl := &x509.Certificate{
		Subject:               t.subject(commonName),
		NotBefore:             t.notBefore,
		NotAfter:              t.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           append([]x509.ExtKeyUsage{role.extKeyUsage()}, t.extraEKU...),
		BasicConstraintsValid: true,
		DNSNames:              t.dns,
		IPAddresses:           t.ips,
		URIs:                  t.uris,
		EmailAddresses:        t.emails,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	s, err := sign(t.keyType, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", commonName, err)
	}
	return &Leaf{Cert: s.cert, Key: s.key, CertPEM: EncodeCertificates(s.cert), KeyPEM: s.keyPEM}, nil
}

// signed is a new certificate with its new key.
type signed struct {
	cert   *x509.Certificate
	key    crypto.Signer
	keyPEM []byte
}

// sign generates a key of type k and signs tmpl for it with a fresh
// serial: by parent and parentKey, or by the new key itself when parent is
// nil (a self-signed CA). An RSA key also gets key encipherment, which
// TLS 1.2 RSA key exchange needs.
func sign(k KeyType, tmpl *x509.Certificate, parent *x509.Certificate, parentKey crypto.Signer) (*signed, error) {
	key, err := generateKey(k)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	tmpl.SubjectKeyId = subjectKeyID(key.Public())
	if _, isRSA := key.(*rsa.PrivateKey); isRSA && !tmpl.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &signed{cert: cert, key: key, keyPEM: keyPEM}, nil
}

// TLSCertificate returns the leaf as a tls.Certificate with Leaf set.
func (l *Leaf) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

// WriteFiles writes the certificate (0644) and the key (0600) atomically.
// The key is written first, so a reader that sees the new certificate
// never pairs it with an older key for long; readers should still validate.
func (l *Leaf) WriteFiles(certPath, keyPath string) error {
	if err := WriteFileAtomic(keyPath, l.KeyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, l.CertPEM, 0o644)
}

// WriteFiles writes the CA certificate (0644) and its key (0600) atomically.
func (ca *CA) WriteFiles(certPath, keyPath string) error {
	if err := WriteFileAtomic(keyPath, ca.KeyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, ca.CertPEM, 0o644)
}

// LoadCA reads a CA certificate and its private key, e.g. to mint leaves.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certFile, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", keyFile, err)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("pki: %s: %w", certFile, ErrNotCA)
	}
	if !PublicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("pki: %s and %s: %w", certFile, keyFile, ErrKeyMismatch)
	}
	return &CA{Cert: certs[0], Key: key, CertPEM: EncodeCertificates(certs[0]), KeyPEM: keyPEM}, nil
}

func (t *template) subject(cn string) pkix.Name {
	n := pkix.Name{CommonName: cn}
	if t.org != "" {
		n.Organization = []string{t.org}
	}
	return n
}

func generateKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case KeyECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("key type %q: want %s, %s or %s", k, KeyECDSAP256, KeyRSA2048, KeyEd25519)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func subjectKeyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha1Sum(der)
	return sum[:]
}

// PublicKeysEqual reports whether two public keys are the same key.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

// Sentinel errors callers can branch on.
var (
	ErrNoPEM          = errors.New("no PEM data found")
	ErrNotCA          = errors.New("certificate is not a CA")
	ErrKeyMismatch    = errors.New("private key does not match certificate")
	ErrUnsupportedKey = errors.New("unsupported private key type")
	ErrEncryptedKey   = errors.New("encrypted keys are not supported")
)
