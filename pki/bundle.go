package pki

import (
	"crypto/x509"
	"fmt"
)

// Bundle concatenates CA certificates from several PEM inputs, drops
// duplicates (same DER), keeps first-seen order, and rejects input that is
// not PEM or holds a certificate that is not a CA. The result is what a
// server's ca_file holds during an overlap: old and new CA together.
func Bundle(inputs ...[]byte) ([]byte, error) {
	certs, err := BundleCertificates(inputs...)
	if err != nil {
		return nil, err
	}
	return EncodeCertificates(certs...), nil
}

// BundleCertificates is Bundle returning the certificates themselves.
func BundleCertificates(inputs ...[]byte) ([]*x509.Certificate, error) {
	seen := map[string]bool{}
	var out []*x509.Certificate
	for i, in := range inputs {
		certs, err := parseCertificates(in)
		if err != nil {
			return nil, fmt.Errorf("pki: bundle input %d: %w", i+1, err)
		}
		for _, c := range certs {
			if !c.IsCA {
				return nil, fmt.Errorf("pki: bundle input %d: %q: %w", i+1, c.Subject.String(), ErrNotCA)
			}
			fp := CertSHA256(c)
			if seen[fp] {
				continue
			}
			seen[fp] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// Pool makes a CertPool of certificates.
func Pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
