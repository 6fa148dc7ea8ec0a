package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

// fixture is a cluster with verify: true, a client CA, and a client's
// files in a directory a FileSource watches.
type fixture struct {
	t        *testing.T
	dir      string
	ca       *pki.CA
	cluster  *embedded.Cluster
	certFile string
	keyFile  string
	caFile   string
}

func newFixture(t *testing.T, servers int, dnsOnly bool) *fixture {
	t.Helper()
	ca, err := pki.NewCA("bus test clients")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "servers"), 0o755); err != nil {
		t.Fatal(err)
	}
	cl, err := embedded.Start(embedded.Options{Dir: filepath.Join(dir, "servers"), Servers: servers, ClientCA: ca.CertPEM, DNSOnly: dnsOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f := &fixture{t: t, dir: dir, ca: ca, cluster: cl}
	f.certFile, f.keyFile = filepath.Join(dir, "client", "tls.crt"), filepath.Join(dir, "client", "tls.key")
	f.caFile = cl.ServerCAFile()
	if err := os.MkdirAll(filepath.Dir(f.certFile), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// issue issues a client leaf from ca.
func (f *fixture) issue(ca *pki.CA, cn string) *pki.Leaf {
	f.t.Helper()
	leaf, err := ca.Issue(cn, pki.RoleClient)
	if err != nil {
		f.t.Fatal(err)
	}
	return leaf
}

// write puts leaf in the client's files.
func (f *fixture) write(leaf *pki.Leaf) {
	f.t.Helper()
	if err := leaf.WriteFiles(f.certFile, f.keyFile); err != nil {
		f.t.Fatal(err)
	}
}

// source watches the client's files.
func (f *fixture) source() *material.FileSource {
	f.t.Helper()
	src, err := material.NewFileSource(context.Background(),
		material.Files{Cert: f.certFile, Key: f.keyFile, Roots: f.caFile},
		material.WithLogger(testLogger(f.t)), material.WithDebounce(10*time.Millisecond))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = src.Close() })
	return src
}

func (f *fixture) urls() string {
	s := ""
	for i, u := range f.cluster.ClientURLs() {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

// presented returns the cert_sha256 each server lists for connections
// named name.
func (f *fixture) presented(name string) []string {
	var out []string
	for _, s := range f.cluster.Servers {
		if s.NATS == nil {
			continue
		}
		cz, err := s.NATS.Connz(&server.ConnzOptions{Username: true, Limit: 10000})
		if err != nil {
			f.t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name != name {
				continue
			}
			for _, pc := range c.TLSPeerCerts {
				out = append(out, pc.CertSha256)
				break
			}
		}
	}
	return out
}

// kick disconnects every connection named name.
func (f *fixture) kick(name string) {
	for _, s := range f.cluster.Servers {
		if s.NATS == nil {
			continue
		}
		cz, _ := s.NATS.Connz(&server.ConnzOptions{Limit: 10000})
		for _, c := range cz.Conns {
			if c.Name == name {
				_ = s.NATS.DisconnectClientByID(c.Cid)
			}
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fp(l *pki.Leaf) string { return pki.CertSHA256(l.Cert) }

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("NATSCERT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// failures collects what the failure handler gets.
type failures struct {
	mu   sync.Mutex
	list []Failure
}

func (fs *failures) add(f Failure) {
	fs.mu.Lock()
	fs.list = append(fs.list, f)
	fs.mu.Unlock()
}

func (fs *failures) count(match func(Failure) bool) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, f := range fs.list {
		if match(f) {
			n++
		}
	}
	return n
}

func (fs *failures) String() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	s := ""
	for _, f := range fs.list {
		s += fmt.Sprintf("\n  %s attempt=%v server=%s %s", f.Reason, f.Attempt, f.Server, f.Detail)
	}
	return s
}

// countingDialer counts every dial of a plain nats.go client.
type countingDialer struct {
	n  atomic.Int64
	nd net.Dialer
}

func (d *countingDialer) Dial(network, addr string) (net.Conn, error) {
	d.n.Add(1)
	return d.nd.Dial(network, addr)
}

func connectOne(t *testing.T, url string, opts ...Option) (*Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Connect(ctx, url, opts...)
}
