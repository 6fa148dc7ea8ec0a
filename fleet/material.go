package fleet

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/natscert/natscert/pki"
)

// Class is what a connection presents, judged against the material the
// operator knows.
type Class string

// The classes of a connection. Their string values are the JSON keys of
// Counts.
const (
	ClassNew     Class = "new"     // a certificate of the new material
	ClassOld     Class = "old"     // a certificate of the old material
	ClassUnknown Class = "unknown" // a certificate that is neither
	ClassNone    Class = "none"    // no peer certificate at all
)

// Material is a set of certificates and fingerprints that together stand
// for one generation ("old" or "new") of client material.
//
// nats-server reports for every connection only the subject and the two
// fingerprints of the leaf it was shown (no issuer), so a connection is
// matched by fingerprint. The rule, in order:
//
//  1. the leaf's cert_sha256 equals a leaf certificate or a fingerprint
//     of the material;
//  2. the leaf's spki_sha256 equals a fingerprint given as such;
//  3. the leaf is known to the observer (given anywhere as a leaf
//     certificate, see WithKnownLeaves) and a CA certificate of the
//     material signed it;
//  4. the leaf's spki_sha256 equals the public key of a leaf certificate of
//     the material (a renewal with the same key), when only one of old and
//     new has it.
//
// A CA certificate therefore means "any leaf issued by that CA that the
// operator also supplied"; a leaf nobody supplied stays unknown.
type Material struct {
	certs  map[string]bool // cert_sha256 of leaf certificates
	spkis  map[string]bool // spki_sha256 of leaf certificates
	prints map[string]bool // bare fingerprints: cert or spki sha256
	cas    []*x509.Certificate
	leaves []*x509.Certificate
}

// NewMaterial returns a material holding certs; a certificate with
// IsCA set counts as an issuer, any other as a leaf.
func NewMaterial(certs ...*x509.Certificate) *Material {
	m := &Material{certs: map[string]bool{}, spkis: map[string]bool{}, prints: map[string]bool{}}
	m.Add(certs...)
	return m
}

// Add adds certificates: CA certificates as issuers, others as leaves.
func (m *Material) Add(certs ...*x509.Certificate) {
	for _, c := range certs {
		if c.IsCA {
			m.cas = append(m.cas, c)
			continue
		}
		m.leaves = append(m.leaves, c)
		m.certs[pki.CertSHA256(c)] = true
		m.spkis[pki.SPKISHA256(c)] = true
	}
}

// AddFingerprint adds hex sha256 fingerprints, each matched against both
// cert_sha256 and spki_sha256. Colons and a "sha256:" prefix are allowed.
func (m *Material) AddFingerprint(fps ...string) error {
	for _, fp := range fps {
		n, ok := normalizeFingerprint(fp)
		if !ok {
			return fmt.Errorf("fleet: %q is not a hex sha256 fingerprint", fp)
		}
		m.prints[n] = true
	}
	return nil
}

// Empty reports whether m holds nothing to match.
func (m *Material) Empty() bool {
	return m == nil || (len(m.certs) == 0 && len(m.prints) == 0 && len(m.cas) == 0)
}

// Leaves returns the leaf certificates of m.
func (m *Material) Leaves() []*x509.Certificate {
	if m == nil {
		return nil
	}
	return m.leaves
}

// ReadMaterial reads certificates and fingerprints. Each argument is a PEM
// file (one certificate or a bundle), a directory (every regular file in
// it that holds certificates; others are skipped), or a hex sha256
// fingerprint.
func ReadMaterial(args ...string) (*Material, error) {
	m := NewMaterial()
	for _, arg := range args {
		if arg == "" {
			continue
		}
		fi, err := os.Stat(arg)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if n, ok := normalizeFingerprint(arg); ok {
					m.prints[n] = true
					continue
				}
			}
			return nil, fmt.Errorf("fleet: material %s: %w", arg, err)
		}
		if !fi.IsDir() {
			certs, err := pki.ReadCertificates(arg)
			if err != nil {
				return nil, fmt.Errorf("fleet: material %s: %w", arg, err)
			}
			m.Add(certs...)
			continue
		}
		entries, err := os.ReadDir(arg)
		if err != nil {
			return nil, fmt.Errorf("fleet: material %s: %w", arg, err)
		}
		found := false
		for _, e := range entries {
			p := filepath.Join(arg, e.Name())
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				continue // follows symlinks (Secret volumes), skips the ..data dirs
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("fleet: material %s: %w", p, err)
			}
			certs, err := pki.ParseCertificates(data)
			if err != nil || len(certs) == 0 {
				continue // keys and other files live next to certificates
			}
			m.Add(certs...)
			found = true
		}
		if !found {
			return nil, fmt.Errorf("fleet: material %s: no certificates in directory", arg)
		}
	}
	return m, nil
}

func normalizeFingerprint(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

// classifier applies the rule documented on Material.
type classifier struct {
	old, new *Material
	known    map[string]*x509.Certificate // cert_sha256 -> leaf
	cache    map[[2]string]Class
}

func newClassifier(old, new *Material, known []*x509.Certificate) (*classifier, error) {
	if old == nil {
		old = NewMaterial()
	}
	if new == nil {
		new = NewMaterial()
	}
	c := &classifier{old: old, new: new, known: map[string]*x509.Certificate{}, cache: map[[2]string]Class{}}
	var both []string
	for fp := range new.certs {
		if old.certs[fp] || old.prints[fp] {
			both = append(both, fp)
		}
	}
	for fp := range new.prints {
		if old.certs[fp] || old.prints[fp] {
			both = append(both, fp)
		}
	}
	if len(both) > 0 {
		sort.Strings(both)
		return nil, fmt.Errorf("fleet: %w: %s", ErrAmbiguous, strings.Join(both, ", "))
	}
	for _, l := range append(append(append([]*x509.Certificate(nil), known...), old.leaves...), new.leaves...) {
		if !l.IsCA {
			c.known[pki.CertSHA256(l)] = l
		}
	}
	return c, nil
}

// judging reports whether any material was given at all.
func (c *classifier) judging() bool { return !c.old.Empty() || !c.new.Empty() }

func (c *classifier) classify(certSHA, spkiSHA string) Class {
	if certSHA == "" && spkiSHA == "" {
		return ClassNone
	}
	key := [2]string{certSHA, spkiSHA}
	if cl, ok := c.cache[key]; ok {
		return cl
	}
	cl := c.match(certSHA, spkiSHA)
	c.cache[key] = cl
	return cl
}

func (c *classifier) match(certSHA, spkiSHA string) Class {
	switch {
	case c.new.certs[certSHA] || c.new.prints[certSHA]:
		return ClassNew
	case c.old.certs[certSHA] || c.old.prints[certSHA]:
		return ClassOld
	case c.new.prints[spkiSHA] && !c.old.prints[spkiSHA]:
		return ClassNew
	case c.old.prints[spkiSHA] && !c.new.prints[spkiSHA]:
		return ClassOld
	}
	if leaf := c.known[certSHA]; leaf != nil {
		inNew, inOld := signedBy(leaf, c.new.cas), signedBy(leaf, c.old.cas)
		if inNew && !inOld {
			return ClassNew
		}
		if inOld && !inNew {
			return ClassOld
		}
	}
	inNew, inOld := c.new.spkis[spkiSHA], c.old.spkis[spkiSHA]
	if inNew && !inOld {
		return ClassNew
	}
	if inOld && !inNew {
		return ClassOld
	}
	return ClassUnknown
}

func signedBy(leaf *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if leaf.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}
