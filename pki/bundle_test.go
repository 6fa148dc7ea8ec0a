package pki_test

import (
	"errors"
	"testing"

	"github.com/natscert/natscert/pki"
)

func TestBundle(t *testing.T) {
	a, b, c := newCA(t, "A"), newCA(t, "B"), newCA(t, "C")
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// B is in both inputs: it appears once, where it was first seen.
	out, err := pki.Bundle(cat(a.CertPEM, b.CertPEM), cat(b.CertPEM, c.CertPEM, a.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) != 3 || names[0] != "A" || names[1] != "B" || names[2] != "C" {
		t.Errorf("bundle holds %v, want [A B C]", names)
	}

	leaf := issue(t, a, "leaf", pki.RoleClient)
	if _, err := pki.Bundle(a.CertPEM, leaf.CertPEM); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("bundle with a leaf: %v, want ErrNotCA", err)
	}
	if _, err := pki.Bundle(a.CertPEM, []byte("garbage")); !errors.Is(err, pki.ErrNoPEM) {
		t.Errorf("bundle with garbage: %v, want ErrNoPEM", err)
	}
	if _, err := pki.Bundle(a.CertPEM, nil); !errors.Is(err, pki.ErrNoPEM) {
		t.Errorf("bundle with an empty input: %v, want ErrNoPEM", err)
	}
}
