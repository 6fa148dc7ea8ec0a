package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWorkerRotatesWithoutRestart runs the worker as a process, rotates
// its files, and expects the server to see the new certificate, then a
// clean exit on SIGTERM.
func TestWorkerRotatesWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ca, err := pki.NewCA("worker test clients")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "servers"), 0o755); err != nil {
		t.Fatal(err)
	}
	cl, err := embedded.Start(embedded.Options{Dir: filepath.Join(dir, "servers"), ClientCA: ca.CertPEM, DNSOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue := func() *pki.Leaf {
		l, err := ca.Issue("worker-1", pki.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WriteFiles(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := issue()

	var logs syncBuffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"NATS_URL="+cl.Servers[0].ClientURL, "NATS_TLS_CA="+cl.ServerCAFile(),
		"NATS_TLS_CERT="+certFile, "NATS_TLS_KEY="+keyFile, "NATS_CLIENT_NAME=worker-1",
		"NATSCERT_STRATEGY=swap", "NATSCERT_SPREAD=100ms", "WORKER_PUBLISH_INTERVAL=50ms")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	}()

	presented := func() string {
		cz, err := cl.Servers[0].NATS.Connz(&server.ConnzOptions{Username: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name == "worker-1" && len(c.TLSPeerCerts) > 0 {
				return c.TLSPeerCerts[0].CertSha256
			}
		}
		return ""
	}
	wait := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("first certificate", func() bool { return presented() == pki.CertSHA256(first.Cert) })

	probe, err := ca.Issue("probe", pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	pc := probe.TLSCertificate()
	nc, err := nats.Connect(cl.Servers[0].ClientURL,
		nats.ClientTLSConfig(func() (tls.Certificate, error) { return pc, nil }, nil), nats.RootCAs(cl.ServerCAFile()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r, err := nc.Request("worker.rpc", []byte("hi"), 5*time.Second)
	if err != nil || !strings.HasPrefix(string(r.Data), "worker-1 ") {
		t.Fatalf("rpc: %v %v", r, err)
	}

	second := issue()
	wait("second certificate", func() bool { return presented() == pki.CertSHA256(second.Cert) })
	if _, err := nc.Request("worker.rpc", []byte("hi"), 5*time.Second); err != nil {
		t.Fatalf("rpc after rotation: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit on SIGTERM")
	}
	for _, want := range []string{"connected to nats", "nats material loaded", "nats connection swapped", "worker stopping"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}
