package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// watchOutput is a stdout the source's goroutine writes while the test
// reads.
type watchOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *watchOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// lines returns the JSON lines printed so far.
func (o *watchOutput) lines(t *testing.T) []map[string]any {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(o.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func (o *watchOutput) waitFor(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, l := range o.lines(t) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line for %s in:\n%s", what, o.buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchCommand(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string) *pki.Leaf {
		l, err := ca.Issue(cn, pki.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	cert, key, roots := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	first := issue("first")
	if err := first.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(roots, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &watchOutput{}
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"watch", "--cert", cert, "--key", key, "--roots", roots, "--json"}, out, &stderr)
	}()
	fpOf := func(l *pki.Leaf) string { return pki.CertSHA256(l.Cert) }
	line := out.waitFor(t, "the first load", func(m map[string]any) bool {
		return m["event"] == "loaded" && m["cert_sha256"] == fpOf(first)
	})
	if line["not_after"] == nil || line["reason"] != "start" {
		t.Errorf("first line %v", line)
	}

	next := issue("next")
	if err := next.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "the next leaf", func(m map[string]any) bool {
		return m["event"] == "loaded" && m["cert_sha256"] == fpOf(next)
	})

	if err := pki.WriteFileAtomic(cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	line = out.waitFor(t, "a rejection", func(m map[string]any) bool { return m["event"] == "rejected" })
	if line["cert_sha256"] != fpOf(next) || !strings.Contains(line["reason"].(string), pki.CodeCertUnparsable) {
		t.Errorf("rejected line %v: want the reason and the still-served leaf", line)
	}

	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Fatalf("exit %d after interrupt, stderr %s", c, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop on interrupt")
	}
}

func TestWatchCommandFirstLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("client", pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := leaf.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"missing file", []string{"--cert", filepath.Join(dir, "nope.pem"), "--key", key}, exitUsage},
		{"invalid", []string{"--cert", garbage, "--key", key}, exitDoesNotHold},
		{"roots not a CA", []string{"--cert", cert, "--key", key, "--roots", cert}, exitDoesNotHold},
		{"no files", nil, exitUsage},
		{"cert without key", []string{"--cert", cert}, exitUsage},
		{"bad role", []string{"--cert", cert, "--key", key, "--role", "peer"}, exitUsage},
		{"missing file after waiting", []string{"--cert", filepath.Join(dir, "nope.pem"), "--key", key, "--wait", "200ms"}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(context.Background(), append([]string{"watch"}, tc.args...), &stdout, &stderr)
			if got != tc.code {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", got, tc.code, stdout.String(), stderr.String())
			}
		})
	}
}
