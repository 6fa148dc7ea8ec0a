package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

func TestStatusCommand(t *testing.T) {
	dir := t.TempDir()
	oldCA, _ := pki.NewCA("old")
	newCA, _ := pki.NewCA("new")
	bundle, _ := pki.Bundle(oldCA.CertPEM, newCA.CertPEM)
	c, err := embedded.Start(embedded.Options{Dir: t.TempDir(), Servers: 2, ClientCA: bundle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	oldLeaf, _ := oldCA.Issue("a", pki.RoleClient)
	newLeaf, _ := newCA.Issue("b", pki.RoleClient)
	sysLeaf, _ := newCA.Issue("sys", pki.RoleClient)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := pki.WriteFileAtomic(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldFile, newCAFile := write("old.pem", oldLeaf.CertPEM), write("new-ca.pem", newCA.CertPEM)
	newDir := filepath.Join(dir, "leaves")
	if err := os.Mkdir(newDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := newLeaf.WriteFiles(filepath.Join(newDir, "b.pem"), filepath.Join(newDir, "b-key.pem")); err != nil {
		t.Fatal(err)
	}
	sysCert, sysKey := write("sys.pem", sysLeaf.CertPEM), write("sys-key.pem", sysLeaf.KeyPEM)

	dial := func(url string, leaf *pki.Leaf, name string) *nats.Conn {
		cert := leaf.TLSCertificate()
		// ClientTLSConfig before RootCAs: it replaces the TLS config.
		nc, err := nats.Connect(url, nats.Name(name),
			nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
			nats.RootCAs(c.ServerCAFile()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	a := dial(c.Servers[0].ClientURL, oldLeaf, "a")
	dial(c.Servers[1].ClientURL, newLeaf, "b")
	monitor := strings.Join(c.MonitorURLs(), ",")
	system := []string{"--system-url", c.Servers[0].ClientURL, "--system-user", embedded.SystemUser,
		"--system-password", embedded.SystemPassword, "--system-cert", sysCert, "--system-key", sysKey,
		"--system-ca", c.ServerCAFile(), "--expect-servers", "2"}

	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		code := run(ctx, append([]string{"status"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	// The system connection is not yet up; wait for both clients to be listed.
	deadline := time.Now().Add(30 * time.Second)
	for c.Servers[0].NATS.NumClients()+c.Servers[1].NATS.NumClients() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	// Just report: exit 0.
	if code, out, errs := cli("--monitor", monitor, "--settle", "0"); code != exitOK || !strings.Contains(out, "verdict: complete") {
		t.Fatalf("report: %d\n%s%s", code, out, errs)
	}
	// Old still present: exit 1, straggler by name; through both paths.
	for _, src := range [][]string{{"--monitor", monitor}, system} {
		code, out, errs := cli(append(src, "--old", oldFile, "--new", newCAFile, "--leaves", newDir, "--settle", "0")...)
		if code != exitDoesNotHold || !strings.Contains(out, "still on old material (1): a") {
			t.Fatalf("old present via %s: %d\n%s%s", src[0], code, out, errs)
		}
	}
	// JSON carries the counts under new/old/unknown/none.
	code, out, _ := cli("--monitor", monitor, "--old", oldFile, "--new", newDir, "--json", "--settle", "0")
	var js struct {
		Counts  map[string]int `json:"counts"`
		Servers []struct {
			Counts map[string]int `json:"counts"`
		} `json:"servers"`
		Connections []map[string]any `json:"connections"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != exitDoesNotHold {
		t.Fatalf("json: %d %v\n%s", code, err, out)
	}
	if js.Counts["new"] != 1 || js.Counts["old"] != 1 || js.Counts["unknown"] != 0 || js.Counts["none"] != 0 ||
		len(js.Servers) != 2 || len(js.Connections) != 2 {
		t.Fatalf("json counts %v servers %d connections %d", js.Counts, len(js.Servers), len(js.Connections))
	}
	// A missing expected member: exit 3.
	if code, out, _ := cli("--monitor", monitor, "--new", newDir, "--expect-members", "b,ghost", "--settle", "0"); code != exitIncomplete {
		t.Fatalf("missing member: %d\n%s", code, out)
	}
	// Usage errors: exit 2.
	if code, _, _ := cli("--new", newDir); code != exitUsage {
		t.Fatalf("no source: %d", code)
	}
	if code, _, _ := cli("--monitor", monitor, "--new", filepath.Join(dir, "nope.pem")); code != exitUsage {
		t.Fatalf("unreadable material: %d", code)
	}
	// Unreadable system-connection files: exit 2, not an unreachable
	// cluster.
	nope := filepath.Join(dir, "nope.pem")
	for _, bad := range [][]string{
		{"--system-cert", nope, "--system-key", sysKey},
		{"--system-cert", sysCert, "--system-key", nope},
		{"--system-cert", sysCert, "--system-key", sysKey, "--system-ca", nope},
		{"--system-cert", sysCert, "--system-key", sysKey, "--system-ca", sysKey},
	} {
		if code, _, errs := cli(append([]string{"--system-url", c.Servers[0].ClientURL, "--new", newDir}, bad...)...); code != exitUsage {
			t.Fatalf("%v: exit %d, want %d\n%s", bad, code, exitUsage, errs)
		}
	}
	// a moves to new material: --wait converges, exit 0.
	a.Close()
	dial(c.Servers[1].ClientURL, newLeaf, "a")
	code, out, errs := cli(append(system, "--old", oldFile, "--new", newDir, "--wait", "--timeout", "30s", "--settle", "300ms")...)
	if code != exitOK || !strings.Contains(out, "verdict: converged") || !strings.Contains(errs, "converged") {
		t.Fatalf("wait: %d\n%s%s", code, out, errs)
	}
	// A stopped server: exit 3 on either path.
	c.Servers[1].Stop()
	if code, out, _ := cli("--monitor", monitor, "--new", newDir, "--settle", "0"); code != exitIncomplete {
		t.Fatalf("server down: %d\n%s", code, out)
	}
}
