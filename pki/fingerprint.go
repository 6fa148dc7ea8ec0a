package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
)

// CertSHA256 is the hex sha256 of the certificate's DER, as nats-server
// reports it in tls_peer_certs[].cert_sha256.
func CertSHA256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SPKISHA256 is the hex sha256 of the certificate's SubjectPublicKeyInfo
// DER, as nats-server reports it in tls_peer_certs[].spki_sha256 and as
// pinned_certs expects it.
func SPKISHA256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}
