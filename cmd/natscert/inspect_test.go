package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// cliMaterial is a clean client set on disk: leaf, key, issuer, roots.
type cliMaterial struct {
	dir                      string
	ca                       *pki.CA
	cert, key, issuer, roots string
}

func newCLIMaterial(t *testing.T) *cliMaterial {
	t.Helper()
	m := &cliMaterial{dir: t.TempDir()}
	var err error
	if m.ca, err = pki.NewCA("clients CA"); err != nil {
		t.Fatal(err)
	}
	serverCA, err := pki.NewCA("servers CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf := m.leaf(t, "orders-7", pki.RoleClient)
	m.cert = m.write(t, "client.pem", leaf.CertPEM, 0o644)
	m.key = m.write(t, "client-key.pem", leaf.KeyPEM, 0o600)
	m.issuer = m.write(t, "issuer.pem", m.ca.CertPEM, 0o644)
	m.roots = m.write(t, "roots.pem", serverCA.CertPEM, 0o644)
	return m
}

func (m *cliMaterial) leaf(t *testing.T, cn string, role pki.Role, opts ...pki.Option) *pki.Leaf {
	t.Helper()
	l, err := m.ca.Issue(cn, role, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (m *cliMaterial) write(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(m.dir, name)
	if err := pki.WriteFileAtomic(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func (m *cliMaterial) args() []string {
	return []string{"inspect", "--cert", m.cert, "--key", m.key, "--issuer", m.issuer, "--roots", m.roots, "--role", "client"}
}

func TestInspectCommandClean(t *testing.T) {
	m := newCLIMaterial(t)
	code, out, errOut := runCLI(t, m.args()...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "CN=orders-7") || !strings.Contains(out, "cert_sha256") || !hasLine(out, "result: clean (0 errors, 0 warnings)") {
		t.Errorf("output:\n%s", out)
	}
	// Warnings alone keep exit 0.
	soon := m.leaf(t, "orders-7", pki.RoleClient, pki.WithLifetime(24*time.Hour))
	m.cert = m.write(t, "client.pem", soon.CertPEM, 0o644)
	m.key = m.write(t, "client-key.pem", soon.KeyPEM, 0o600)
	code, out, _ = runCLI(t, m.args()...)
	if code != exitOK || !strings.Contains(out, "warning "+pki.CodeExpiringSoon) {
		t.Errorf("expiring soon: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, append(m.args(), "--warn-within", "1h")...); code != exitOK || strings.Contains(out, "warning "+pki.CodeExpiringSoon) {
		t.Errorf("--warn-within 1h: exit %d\n%s", code, out)
	}
}

// TestInspectCommandProblems gives inspect one broken set per case and
// checks that it names the problem and exits as documented.
func TestInspectCommandProblems(t *testing.T) {
	tests := []struct {
		name string
		code int
		want string // in stdout for exit 1, in stderr for exit 2
		edit func(t *testing.T, m *cliMaterial)
	}{
		{"key from another pair", exitDoesNotHold, "error " + pki.CodeKeyMismatch, func(t *testing.T, m *cliMaterial) {
			m.key = m.write(t, "other-key.pem", m.leaf(t, "orders-8", pki.RoleClient).KeyPEM, 0o600)
		}},
		{"expired", exitDoesNotHold, "error " + pki.CodeExpired, func(t *testing.T, m *cliMaterial) {
			l := m.leaf(t, "orders-7", pki.RoleClient, pki.WithValidity(time.Now().Add(-72*time.Hour), time.Now().Add(-time.Hour)))
			m.cert, m.key = m.write(t, "c.pem", l.CertPEM, 0o644), m.write(t, "k.pem", l.KeyPEM, 0o600)
		}},
		{"not yet valid", exitDoesNotHold, "error " + pki.CodeNotYetValid, func(t *testing.T, m *cliMaterial) {
			l := m.leaf(t, "orders-7", pki.RoleClient, pki.WithValidity(time.Now().Add(time.Hour), time.Now().Add(72*time.Hour)))
			m.cert, m.key = m.write(t, "c.pem", l.CertPEM, 0o644), m.write(t, "k.pem", l.KeyPEM, 0o600)
		}},
		{"issued by another CA than --issuer", exitDoesNotHold, "error " + pki.CodeUnknownIssuer, func(t *testing.T, m *cliMaterial) {
			other, err := pki.NewCA("other CA")
			if err != nil {
				t.Fatal(err)
			}
			m.issuer = m.write(t, "other-ca.pem", other.CertPEM, 0o644)
		}},
		{"server-only EKU used as client", exitDoesNotHold, "error " + pki.CodeWrongUsage, func(t *testing.T, m *cliMaterial) {
			l := m.leaf(t, "nats-0", pki.RoleServer, pki.WithDNSNames("nats-0"))
			m.cert, m.key = m.write(t, "c.pem", l.CertPEM, 0o644), m.write(t, "k.pem", l.KeyPEM, 0o600)
		}},
		{"garbage certificate PEM", exitDoesNotHold, "error " + pki.CodeCertUnparsable, func(t *testing.T, m *cliMaterial) {
			m.cert = m.write(t, "c.pem", []byte("garbage\n"), 0o644)
		}},
		{"garbage key PEM", exitDoesNotHold, "error " + pki.CodeKeyUnparsable, func(t *testing.T, m *cliMaterial) {
			m.key = m.write(t, "k.pem", []byte("-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"), 0o600)
		}},
		{"world-readable key", exitDoesNotHold, "error " + pki.CodeKeyFileMode, func(t *testing.T, m *cliMaterial) {
			if err := os.Chmod(m.key, 0o604); err != nil {
				t.Fatal(err)
			}
		}},
		{"roots bundle holding a leaf", exitDoesNotHold, "error " + pki.CodeBundleNotCA, func(t *testing.T, m *cliMaterial) {
			m.roots = m.cert
		}},
		{"unreadable certificate file", exitUsage, "cannot read file", func(t *testing.T, m *cliMaterial) {
			m.cert = filepath.Join(m.dir, "missing.pem")
		}},
		{"unreadable roots file", exitUsage, "cannot read file", func(t *testing.T, m *cliMaterial) {
			m.roots = m.dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newCLIMaterial(t)
			tt.edit(t, m)
			code, out, errOut := runCLI(t, m.args()...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			where := out
			if tt.code == exitUsage {
				where = errOut
			}
			if !strings.Contains(where, tt.want) {
				t.Errorf("output does not name %q\nstdout:\n%s\nstderr:\n%s", tt.want, out, errOut)
			}
			if tt.code == exitDoesNotHold && !strings.Contains(out, "result: NOT USABLE") {
				t.Errorf("no verdict line:\n%s", out)
			}
		})
	}
}

func TestInspectCommandJSON(t *testing.T) {
	m := newCLIMaterial(t)
	m.roots = m.cert
	code, out, _ := runCLI(t, append(m.args(), "--json")...)
	if code != exitDoesNotHold {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Clean    bool
		Findings []pki.Finding
		Leaf     *pki.CertInfo
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if rep.Clean || len(rep.Findings) != 1 || rep.Findings[0].Code != pki.CodeBundleNotCA || rep.Leaf == nil {
		t.Errorf("JSON report %+v", rep)
	}
}

func TestInspectCommandUsage(t *testing.T) {
	m := newCLIMaterial(t)
	for name, args := range map[string][]string{
		"no key":    {"inspect", "--cert", m.cert},
		"bad role":  {"inspect", "--cert", m.cert, "--key", m.key, "--role", "peer"},
		"bad flag":  {"inspect", "--cert", m.cert, "--key", m.key, "--nope"},
		"stray arg": {"inspect", "--cert", m.cert, "--key", m.key, "extra"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
}
