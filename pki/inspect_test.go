package pki_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// material is one set of files for Inspect, built with pki in a temp dir.
type material struct {
	dir string
	in  pki.InspectInput
}

// write puts data at dir/name with mode and returns the path.
func (m *material) write(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(m.dir, name)
	if err := pki.WriteFileAtomic(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// cleanMaterial is a client leaf with its key, the CA that issued it as the
// issuer bundle, and a server CA as roots: everything in order.
func cleanMaterial(t *testing.T) (*material, *pki.CA) {
	t.Helper()
	m := &material{dir: t.TempDir()}
	ca := newCA(t, "clients CA")
	serverCA := newCA(t, "servers CA")
	leaf := issue(t, ca, "orders-7", pki.RoleClient, pki.WithDNSNames("orders-7.svc"))
	m.in = pki.InspectInput{
		CertFile:   m.write(t, "client.pem", leaf.CertPEM, 0o644),
		KeyFile:    m.write(t, "client-key.pem", leaf.KeyPEM, 0o600),
		IssuerFile: m.write(t, "issuer.pem", ca.CertPEM, 0o644),
		RootsFile:  m.write(t, "roots.pem", serverCA.CertPEM, 0o644),
		Role:       pki.RoleClient,
		WarnWithin: 720 * time.Hour,
	}
	return m, ca
}

func codes(fs pki.Findings) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Severity)+" "+f.Code)
	}
	return out
}

func TestInspectClean(t *testing.T) {
	m, _ := cleanMaterial(t)
	rep, err := pki.Inspect(m.in)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 || !rep.Clean() {
		t.Errorf("clean material has findings %v", codes(rep.Findings))
	}
	if rep.Leaf == nil || rep.Leaf.Subject != "CN=orders-7" || len(rep.Issuers) != 1 || len(rep.Roots) != 1 {
		t.Errorf("report: leaf %+v, %d issuers, %d roots", rep.Leaf, len(rep.Issuers), len(rep.Roots))
	}
}

// TestInspectFindings builds one broken set per case and checks that
// Inspect names exactly that problem, as an error-severity finding.
func TestInspectFindings(t *testing.T) {
	tests := []struct {
		name  string
		code  string
		what  string
		words string // part of the plain sentence
		edit  func(t *testing.T, m *material, ca *pki.CA)
	}{
		{
			name: "key from another pair", code: pki.CodeKeyMismatch, what: "key", words: "belongs to another certificate",
			edit: func(t *testing.T, m *material, ca *pki.CA) {
				other := issue(t, ca, "orders-8", pki.RoleClient)
				m.in.KeyFile = m.write(t, "other-key.pem", other.KeyPEM, 0o600)
			},
		},
		{
			name: "expired", code: pki.CodeExpired, what: "cert", words: "expired",
			edit: func(t *testing.T, m *material, ca *pki.CA) {
				old := issue(t, ca, "orders-7", pki.RoleClient, pki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
				m.in.CertFile = m.write(t, "client.pem", old.CertPEM, 0o644)
				m.in.KeyFile = m.write(t, "client-key.pem", old.KeyPEM, 0o600)
			},
		},
		{
			name: "not yet valid", code: pki.CodeNotYetValid, what: "cert", words: "not valid until",
			edit: func(t *testing.T, m *material, ca *pki.CA) {
				early := issue(t, ca, "orders-7", pki.RoleClient, pki.WithValidity(time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)))
				m.in.CertFile = m.write(t, "client.pem", early.CertPEM, 0o644)
				m.in.KeyFile = m.write(t, "client-key.pem", early.KeyPEM, 0o600)
			},
		},
		{
			name: "issued by another CA than the issuer bundle", code: pki.CodeUnknownIssuer, what: "cert", words: "not in the issuer bundle",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				stranger := newCA(t, "stranger CA")
				m.in.IssuerFile = m.write(t, "issuer.pem", stranger.CertPEM, 0o644)
			},
		},
		{
			name: "server-only EKU used as client", code: pki.CodeWrongUsage, what: "cert", words: "a client needs",
			edit: func(t *testing.T, m *material, ca *pki.CA) {
				srv := issue(t, ca, "nats-0", pki.RoleServer, pki.WithDNSNames("nats-0"))
				m.in.CertFile = m.write(t, "client.pem", srv.CertPEM, 0o644)
				m.in.KeyFile = m.write(t, "client-key.pem", srv.KeyPEM, 0o600)
			},
		},
		{
			name: "garbage certificate PEM", code: pki.CodeCertUnparsable, what: "cert", words: "not a readable PEM certificate",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				m.in.CertFile = m.write(t, "client.pem", []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o644)
			},
		},
		{
			name: "garbage key PEM", code: pki.CodeKeyUnparsable, what: "key", words: "not a readable PEM private key",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				m.in.KeyFile = m.write(t, "client-key.pem", []byte("hello\n"), 0o600)
			},
		},
		{
			name: "world-readable key", code: pki.CodeKeyFileMode, what: "key", words: "chmod 600",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				if err := os.Chmod(m.in.KeyFile, 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "group-readable key", code: pki.CodeKeyFileMode, what: "key", words: "0640",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				if err := os.Chmod(m.in.KeyFile, 0o640); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "roots bundle holding a leaf", code: pki.CodeBundleNotCA, what: "roots", words: "is a leaf certificate, not a CA",
			edit: func(t *testing.T, m *material, ca *pki.CA) {
				leaf := issue(t, ca, "stray leaf", pki.RoleServer, pki.WithDNSNames("x"))
				roots, _ := os.ReadFile(m.in.RootsFile)
				m.in.RootsFile = m.write(t, "roots.pem", append(roots, leaf.CertPEM...), 0o644)
			},
		},
		{
			name: "garbage roots bundle", code: pki.CodeBundleUnparsable, what: "roots", words: "not a readable PEM bundle",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				m.in.RootsFile = m.write(t, "roots.pem", []byte("not pem"), 0o644)
			},
		},
		{
			name: "expired CA in the roots bundle", code: pki.CodeBundleExpired, what: "roots", words: "expired at",
			edit: func(t *testing.T, m *material, _ *pki.CA) {
				old := newCA(t, "old servers CA", pki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
				m.in.RootsFile = m.write(t, "roots.pem", old.CertPEM, 0o644)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ca := cleanMaterial(t)
			tt.edit(t, m, ca)
			rep, err := pki.Inspect(m.in)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Clean() {
				t.Fatalf("report is clean; findings %v", codes(rep.Findings))
			}
			var found *pki.Finding
			for i, f := range rep.Findings {
				if f.Code == tt.code {
					found = &rep.Findings[i]
				}
			}
			if found == nil {
				t.Fatalf("no %s finding; got %v", tt.code, codes(rep.Findings))
			}
			if found.Severity != pki.SeverityError || found.What != tt.what || found.File == "" {
				t.Errorf("finding %+v: want severity error, what %s, a file", *found, tt.what)
			}
			if !strings.Contains(found.Message, tt.words) {
				t.Errorf("message %q does not say %q", found.Message, tt.words)
			}
			// Errors come first, so a reader sees the worst at the top.
			if rep.Findings[0].Severity != pki.SeverityError {
				t.Errorf("first finding is %s", rep.Findings[0].Severity)
			}
			if err := rep.Findings.Err(); !errors.Is(err, pki.ErrInvalid) {
				t.Errorf("Findings.Err() = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestInspectExpiringSoonIsAWarning(t *testing.T) {
	m, ca := cleanMaterial(t)
	soon := issue(t, ca, "orders-7", pki.RoleClient, pki.WithLifetime(24*time.Hour))
	m.in.CertFile = m.write(t, "client.pem", soon.CertPEM, 0o644)
	m.in.KeyFile = m.write(t, "client-key.pem", soon.KeyPEM, 0o600)
	rep, err := pki.Inspect(m.in)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || len(rep.Findings) != 1 || rep.Findings[0].Code != pki.CodeExpiringSoon || rep.Findings[0].Severity != pki.SeverityWarning {
		t.Errorf("findings %v, want one expiring-soon warning", codes(rep.Findings))
	}
	m.in.WarnWithin = time.Hour
	if rep, _ := pki.Inspect(m.in); len(rep.Findings) != 0 {
		t.Errorf("with a 1h threshold: %v", codes(rep.Findings))
	}
}

func TestInspectServerRole(t *testing.T) {
	m, ca := cleanMaterial(t)
	srv := issue(t, ca, "nats-0", pki.RoleServer)
	m.in.CertFile = m.write(t, "server.pem", srv.CertPEM, 0o644)
	m.in.KeyFile = m.write(t, "server-key.pem", srv.KeyPEM, 0o600)
	m.in.Role = pki.RoleServer
	rep, err := pki.Inspect(m.in)
	if err != nil {
		t.Fatal(err)
	}
	// A server leaf with no SANs is usable but clients that verify names
	// reject it: a warning.
	if !rep.Clean() || len(rep.Findings) != 1 || rep.Findings[0].Code != pki.CodeNoSANs {
		t.Errorf("findings %v, want one no-sans warning", codes(rep.Findings))
	}
}

func TestInspectUnreadable(t *testing.T) {
	for _, field := range []string{"cert", "key", "issuer", "roots"} {
		t.Run(field, func(t *testing.T) {
			m, _ := cleanMaterial(t)
			missing := filepath.Join(m.dir, "missing.pem")
			switch field {
			case "cert":
				m.in.CertFile = missing
			case "key":
				m.in.KeyFile = missing
			case "issuer":
				m.in.IssuerFile = missing
			case "roots":
				m.in.RootsFile = m.dir // a directory cannot be read as a file
			}
			rep, err := pki.Inspect(m.in)
			if !errors.Is(err, pki.ErrUnreadable) || rep != nil {
				t.Errorf("Inspect = %v, %v; want ErrUnreadable", rep, err)
			}
		})
	}
}

// CheckSet is the one check of a set, for Inspect and for material: each
// finding names its piece, what parsed is returned to describe, and the
// pair is served only when nothing is wrong.
func TestCheckSet(t *testing.T) {
	ca, other := newCA(t, "clients CA"), newCA(t, "other CA")
	leaf := issue(t, ca, "orders-7", pki.RoleClient)
	stranger := issue(t, other, "stranger", pki.RoleClient)

	set, fs := pki.CheckSet(pki.SetPEM{Cert: leaf.CertPEM, Key: leaf.KeyPEM, Roots: other.CertPEM, Issuer: ca.CertPEM}, pki.CheckOptions{})
	if fs.HasErrors() || set.Cert.Leaf == nil || !set.Leaf.Equal(leaf.Cert) || len(set.Roots) != 1 || len(set.Issuers) != 1 {
		t.Fatalf("clean set: %+v, findings %v", set, fs)
	}

	// The key of another leaf, roots that are a leaf, an issuer bundle
	// with a leaf in it: every piece at fault is named, the leaf is still
	// described and still checked against what parsed of the issuer.
	issuer := append(append([]byte{}, other.CertPEM...), stranger.CertPEM...)
	set, fs = pki.CheckSet(pki.SetPEM{Cert: leaf.CertPEM, Key: stranger.KeyPEM, Roots: leaf.CertPEM, Issuer: issuer}, pki.CheckOptions{})
	var where []string
	for _, f := range fs.WithFiles("c.pem", "k.pem", "r.pem", "i.pem") {
		where = append(where, f.Code+" "+f.What+" "+f.File)
	}
	if got, want := strings.Join(where, "; "), "bundle-not-ca issuer i.pem; bundle-not-ca roots r.pem; key-mismatch key k.pem; unknown-issuer cert c.pem"; got != want {
		t.Errorf("findings\n %s\nwant\n %s", got, want)
	}
	if len(set.Cert.Certificate) != 0 || set.Leaf == nil || !set.Leaf.Equal(leaf.Cert) {
		t.Errorf("a bad set: pair served %v, leaf %v", len(set.Cert.Certificate) != 0, set.Leaf)
	}
	if len(set.Issuers) != 2 || len(set.Roots) != 1 {
		t.Errorf("parsed %d issuers and %d roots, want 2 and 1", len(set.Issuers), len(set.Roots))
	}

	// Nothing configured but roots: no pair is checked.
	if set, fs := pki.CheckSet(pki.SetPEM{Roots: ca.CertPEM}, pki.CheckOptions{}); fs.HasErrors() || len(set.Cert.Certificate) != 0 || set.Leaf != nil {
		t.Errorf("roots only: %+v, %v", set, fs)
	}
}

// Inspect judges validity windows with the skew it is given: with
// DefaultClockSkew, as a FileSource does by default.
func TestInspectSkew(t *testing.T) {
	m, ca := cleanMaterial(t)
	early := issue(t, ca, "early", pki.RoleClient, pki.WithValidity(time.Now().Add(30*time.Second), time.Now().Add(time.Hour)))
	m.in.CertFile = m.write(t, "early.pem", early.CertPEM, 0o644)
	m.in.KeyFile = m.write(t, "early-key.pem", early.KeyPEM, 0o600)
	rep, err := pki.Inspect(m.in)
	if err != nil || rep.Clean() {
		t.Fatalf("no skew: clean %v, %v; want not-yet-valid", rep.Clean(), err)
	}
	m.in.Skew = pki.DefaultClockSkew
	if rep, err = pki.Inspect(m.in); err != nil || !rep.Clean() {
		t.Fatalf("default skew: %v, %v", codes(rep.Findings), err)
	}
}
