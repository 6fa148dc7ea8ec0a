package main

import (
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// TestQuickStart runs the README's quick start through the CLI: a CA, a
// client and a server leaf, a bundle, and a clean inspection of each.
func TestQuickStart(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("natscert %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	mustRun("ca", "new", "--cn", "clients CA 2026", "--out-cert", p("ca.pem"), "--out-key", p("ca-key.pem"), "--valid-for", "30d")
	mustRun("ca", "new", "--cn", "old CA", "--out-cert", p("old-ca.pem"), "--out-key", p("old-ca-key.pem"), "--key-type", "ed25519")
	out := mustRun("cert", "new", "--ca-cert", p("ca.pem"), "--ca-key", p("ca-key.pem"), "--role", "client", "--cn", "orders-7",
		"--uri", "spiffe://example.org/orders", "--email", "ops@example.org", "--valid-for", "90d", "--key-type", "rsa-2048",
		"--out-cert", p("orders-7.pem"), "--out-key", p("orders-7-key.pem"))
	if !strings.Contains(out, "uri:spiffe://example.org/orders") || !strings.Contains(out, "email:ops@example.org") {
		t.Errorf("cert new output:\n%s", out)
	}
	mustRun("cert", "new", "--ca-cert", p("ca.pem"), "--ca-key", p("ca-key.pem"), "--role", "server", "--cn", "nats-0",
		"--dns", "nats-0.nats,nats", "--ip", "127.0.0.1", "--out-cert", p("nats-0.pem"), "--out-key", p("nats-0-key.pem"))
	mustRun("bundle", p("old-ca.pem"), p("ca.pem"), p("old-ca.pem"), "-o", p("overlap.pem"))

	// The files are what the flags asked for.
	ca, err := pki.LoadCA(p("ca.pem"), p("ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(ca.Cert.NotAfter); life < 29*24*time.Hour || life > 31*24*time.Hour {
		t.Errorf("--valid-for 30d gave %s", life)
	}
	old, err := pki.ReadCertificates(p("old-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := old[0].PublicKey.(ed25519.PublicKey); !ok {
		t.Errorf("--key-type ed25519 gave %T", old[0].PublicKey)
	}
	leaf, err := pki.ReadCertificates(p("orders-7.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leaf[0].PublicKey.(*rsa.PublicKey); !ok || leaf[0].Subject.CommonName != "orders-7" {
		t.Errorf("leaf %s key %T", leaf[0].Subject, leaf[0].PublicKey)
	}
	for _, f := range []string{"ca-key.pem", "orders-7-key.pem", "nats-0-key.pem"} {
		if st, err := os.Stat(p(f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, st.Mode(), err)
		}
	}
	bundle, err := pki.ReadCertificates(p("overlap.pem"))
	if err != nil || len(bundle) != 2 || bundle[0].Subject.CommonName != "old CA" || bundle[1].Subject.CommonName != "clients CA 2026" {
		t.Errorf("bundle: %d certs, %v", len(bundle), err)
	}

	mustRun("inspect", "--cert", p("orders-7.pem"), "--key", p("orders-7-key.pem"), "--issuer", p("overlap.pem"), "--roots", p("overlap.pem"), "--warn-within", "24h")
	mustRun("inspect", "--cert", p("nats-0.pem"), "--key", p("nats-0-key.pem"), "--issuer", p("ca.pem"), "--role", "server", "--warn-within", "24h")
}

func TestCertCommandErrors(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if code, _, errOut := runCLI(t, "ca", "new", "--cn", "CA", "--out-cert", p("ca.pem"), "--out-key", p("ca-key.pem")); code != exitOK {
		t.Fatalf("ca new: %d %s", code, errOut)
	}
	leaf := func(extra ...string) []string {
		return append([]string{"cert", "new", "--ca-cert", p("ca.pem"), "--ca-key", p("ca-key.pem"), "--cn", "x",
			"--out-cert", p("x.pem"), "--out-key", p("x-key.pem")}, extra...)
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"ca new without --cn", []string{"ca", "new", "--out-cert", p("a.pem"), "--out-key", p("b.pem")}, exitUsage},
		{"ca new over an existing key", []string{"ca", "new", "--cn", "CA", "--out-cert", p("ca.pem"), "--out-key", p("ca-key.pem")}, exitUsage},
		{"ca new bad key type", []string{"ca", "new", "--cn", "CA", "--out-cert", p("a.pem"), "--out-key", p("b.pem"), "--key-type", "dsa"}, exitUsage},
		{"ca new bad lifetime", []string{"ca", "new", "--cn", "CA", "--out-cert", p("a.pem"), "--out-key", p("b.pem"), "--valid-for", "-1d"}, exitUsage},
		{"ca alone", []string{"ca"}, exitUsage},
		{"cert new bad role", leaf("--role", "peer"), exitUsage},
		{"cert new bad ip", leaf("--ip", "localhost"), exitUsage},
		{"cert new relative uri", leaf("--uri", "orders"), exitUsage},
		{"cert new missing CA file", append(leaf(), "--ca-cert", p("missing.pem")), exitUsage},
		{"cert new with a leaf as CA", append(leaf(), "--ca-cert", p("x0.pem"), "--ca-key", p("x0-key.pem")), exitDoesNotHold},
		{"cert new with the wrong CA key", append(leaf(), "--ca-key", p("x0-key.pem")), exitDoesNotHold},
	}
	// A leaf to misuse as a CA.
	if code, _, errOut := runCLI(t, "cert", "new", "--ca-cert", p("ca.pem"), "--ca-key", p("ca-key.pem"), "--cn", "x0",
		"--out-cert", p("x0.pem"), "--out-key", p("x0-key.pem")); code != exitOK {
		t.Fatalf("cert new: %d %s", code, errOut)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			if errOut == "" {
				t.Error("nothing on stderr")
			}
		})
	}
	if _, err := os.Stat(p("x.pem")); err == nil {
		t.Error("a failed cert new left a certificate behind")
	}
}

func TestBundleCommand(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	a, err := pki.NewCA("A")
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.NewCA("B")
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Issue("leaf", pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"a.pem": a.CertPEM, "b.pem": b.CertPEM, "leaf.pem": l.CertPEM, "junk.pem": []byte("junk")} {
		if err := pki.WriteFileAtomic(p(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Standard output when no -o: B then A, once each.
	code, out, _ := runCLI(t, "bundle", p("b.pem"), p("a.pem"), p("b.pem"))
	if code != exitOK || out != string(b.CertPEM)+string(a.CertPEM) {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a leaf", []string{p("a.pem"), p("leaf.pem")}, exitDoesNotHold, "leaf.pem"},
		{"not PEM", []string{p("a.pem"), p("junk.pem")}, exitDoesNotHold, "junk.pem"},
		{"missing", []string{p("a.pem"), p("missing.pem")}, exitUsage, "missing.pem"},
		{"no inputs", nil, exitUsage, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"bundle", "-o", p("out.pem")}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errOut)
			}
			if _, err := os.Stat(p("out.pem")); err == nil {
				t.Error("a failed bundle wrote its output")
			}
		})
	}
}

// TestHelpTeaches checks that every command of this file set explains
// itself with an example.
func TestHelpTeaches(t *testing.T) {
	for _, args := range [][]string{{"ca"}, {"ca", "new"}, {"cert"}, {"cert", "new"}, {"bundle"}, {"inspect"}, {"budget"}} {
		code, out, _ := runCLI(t, append(args, "--help")...)
		if code != exitOK || !strings.Contains(out, "Example") || !strings.Contains(out, "natscert "+args[0]) {
			t.Errorf("natscert %s --help: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}
