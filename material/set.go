package material

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/natscert/natscert/pki"
)

// hash identifies the bytes of a set so that a re-read of the same bytes
// is reported as unchanged without validating again. Fields are
// length-prefixed so that bytes moving from one file to another change the
// hash, and a file not configured (nil) differs from an empty one.
func hash(c pki.SetPEM) [sha256.Size]byte {
	h := sha256.New()
	var n [9]byte
	for _, b := range [][]byte{c.Cert, c.Key, c.Roots, c.Issuer} {
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

// validate turns the bytes of a set into a served set with pki.CheckSet, or
// explains why it cannot. The error wraps pki.ErrInvalid; the findings
// include warnings of a valid set.
func validate(c pki.SetPEM, o pki.CheckOptions) (*served, pki.Findings, error) {
	set, fs := pki.CheckSet(c, o)
	if err := fs.Err(); err != nil {
		return nil, fs, fmt.Errorf("material: %w", err)
	}
	s := &served{sum: hash(c)}
	if set.Roots != nil {
		s.Roots = pki.Pool(set.Roots)
		for _, r := range set.Roots {
			s.Snapshot.Roots = append(s.Snapshot.Roots, pki.Describe(r))
		}
	}
	if set.Leaf != nil {
		s.Cert = set.Cert
		ci := pki.Describe(set.Leaf)
		s.Snapshot.Leaf = &ci
	}
	return s, fs, nil
}
