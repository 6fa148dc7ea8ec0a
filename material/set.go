package material

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/natscert/natscert/pki"
)

// contents is the bytes of one set of material as read from its files. A
// nil field means the file is not configured.
type contents struct {
	cert, key, roots, issuer []byte
}

// hash identifies contents so that a re-read of the same bytes is reported
// as unchanged without validating again. Fields are length-prefixed so that
// bytes moving from one file to another change the hash.
func (c contents) hash() [sha256.Size]byte {
	h := sha256.New()
	var n [9]byte
	for _, b := range [][]byte{c.cert, c.key, c.roots, c.issuer} {
		n[0] = 0
		if b != nil {
			n[0] = 1
		}
		binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// served is one validated set as a FileSource serves it. It is never
// changed once published, so Cert, RootCAs and Current read it without a
// lock.
type served struct {
	Set
	sum [sha256.Size]byte
}

// validate turns contents into a set, or explains why it cannot: the key
// matches the certificate, the leaf is inside its validity window and fits
// the role, its chain verifies against the issuer bundle when one is given,
// and the roots and issuer bundles hold CAs inside their windows. The error
// wraps pki.ErrInvalid; the findings include warnings of a valid set.
func validate(c contents, o pki.CheckOptions) (*served, pki.Findings, error) {
	var fs pki.Findings
	s := &served{sum: c.hash()}
	if c.issuer != nil {
		issuers, ifs := pki.CheckBundle(c.issuer, "issuer", o)
		fs = append(fs, ifs...)
		if issuers == nil {
			// Still check the leaf against what parses, so that every
			// problem is reported at once; the set is rejected anyway.
			issuers, _ = pki.ParseCertificates(c.issuer)
		}
		o.Issuers = issuers
	}
	if c.roots != nil {
		roots, rfs := pki.CheckBundle(c.roots, "roots", o)
		fs = append(fs, rfs...)
		if roots != nil {
			s.Roots = pki.Pool(roots)
			for _, r := range roots {
				s.Snapshot.Roots = append(s.Snapshot.Roots, pki.Describe(r))
			}
		}
	}
	if c.cert != nil || c.key != nil {
		cert, pfs := pki.CheckPair(c.cert, c.key, o)
		fs = append(fs, pfs...)
		if !pfs.HasErrors() {
			s.Cert = cert
			ci := pki.Describe(cert.Leaf)
			s.Snapshot.Leaf = &ci
		}
	}
	if err := fs.Err(); err != nil {
		return nil, fs, fmt.Errorf("material: %w", err)
	}
	return s, fs, nil
}
