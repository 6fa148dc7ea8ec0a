package pki

import (
	"bytes"
	"crypto"
	"crypto/sha1" //nolint:gosec // subject key identifiers only, as RFC 5280 suggests
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func sha1Sum(b []byte) [20]byte { return sha1.Sum(b) } //nolint:gosec

// EncodeCertificates PEM-encodes certificates in order.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// EncodeKey PEM-encodes a private key as PKCS#8.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	b, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return b, nil
}

// encodeKey is EncodeKey for callers in pki that prefix errors themselves.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificates reads every CERTIFICATE block of PEM data, in order,
// skipping blocks of other types (a key in a combined file). It fails on
// data with no certificate, on a block that does not parse, and on any
// broken PEM armor (a BEGIN without its END, a cut-off armor line), so
// that a half-written or corrupted file is an error, not a shorter bundle.
// Plain text outside the blocks, as openssl writes it ("Bag Attributes",
// "subject="), is skipped, as crypto/tls skips it.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return certs, nil
}

// parseCertificates is ParseCertificates for callers in pki that prefix
// errors themselves.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, block := range blocks {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrNoPEM)
	}
	return certs, nil
}

// ParseKey reads the first private key of PEM data: PKCS#8, PKCS#1 (RSA)
// or SEC 1 (EC), skipping blocks of other types. Like ParseCertificates it
// refuses text that is not PEM around the blocks. Encrypted keys fail with
// ErrEncryptedKey: a process cannot be asked for a passphrase on every
// reload.
func ParseKey(data []byte) (crypto.Signer, error) {
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return key, nil
}

// parseKey is ParseKey for callers in pki that prefix errors themselves.
func parseKey(data []byte) (crypto.Signer, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	for _, block := range blocks {
		var (
			key any
			err error
		)
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, fmt.Errorf("%w (%s block)", ErrEncryptedKey, block.Type)
		case block.Type == "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case block.Type == "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case block.Type == "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
		}
		return signer, nil
	}
	return nil, fmt.Errorf("%w: no PRIVATE KEY block", ErrNoPEM)
}

// pemBlocks splits data into its PEM blocks. pem.Decode alone skips
// whatever precedes the next well-formed block, a broken block included;
// pemBlocks allows only white space outside blocks and names the line of
// anything else.
func pemBlocks(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := data
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			return blocks, nil
		}
		// Text outside blocks is allowed, as crypto/tls allows it (openssl
		// writes "Bag Attributes" and "subject=" lines before blocks); a
		// fragment of PEM armor is not: it is what a truncated or corrupted
		// block leaves behind.
		if i := bytes.Index(rest, []byte("-----BEGIN ")); i != 0 {
			text := rest
			if i > 0 {
				text = rest[:i]
			}
			if j := bytes.Index(text, []byte("-----")); j >= 0 {
				line := bytes.Count(data[:len(data)-len(rest)+j], []byte("\n")) + 1
				return nil, fmt.Errorf("%w: line %d holds a broken PEM line (truncated or garbage?)", ErrNoPEM, line)
			}
			if i < 0 {
				return blocks, nil
			}
			rest = rest[i:]
		}
		line := bytes.Count(data[:len(data)-len(rest)], []byte("\n")) + 1
		block, next := pem.Decode(rest)
		// A block holds one BEGIN line; more in what Decode consumed means
		// it skipped a broken block to reach a good one.
		if block == nil || bytes.Count(rest[:len(rest)-len(next)], []byte("-----BEGIN")) != 1 {
			return nil, fmt.Errorf("%w: the block at line %d is broken (truncated or garbage?)", ErrNoPEM, line)
		}
		blocks = append(blocks, block)
		rest = next
	}
}

// ReadCertificates reads and parses a PEM file of certificates.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return certs, nil
}

// WriteFileAtomic writes data to a temporary file in path's directory and
// renames it over path, so a reader sees the old content or the new, never
// a half-written file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	cleanup := func(e error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, e)
	}
	if err := f.Chmod(perm); err != nil {
		return cleanup(err)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		return cleanup(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
