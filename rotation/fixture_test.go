package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

// fixture is a 3-node embedded cluster, old and new client CAs on disk,
// and real NATS clients as members.
type fixture struct {
	t       *testing.T
	dir     string
	old     *pki.CA
	new     *pki.CA
	cluster *embedded.Cluster
	roots   *x509.CertPool
	clients map[string]*client
}

func newFixture(t *testing.T, servers int) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, clients: map[string]*client{}}
	var err error
	if f.old, err = pki.NewCA("old clients CA"); err != nil {
		t.Fatal(err)
	}
	if f.new, err = pki.NewCA("new clients CA"); err != nil {
		t.Fatal(err)
	}
	must(t, f.old.WriteFiles(f.path("old-ca.pem"), f.path("old-ca-key.pem")))
	must(t, f.new.WriteFiles(f.path("new-ca.pem"), f.path("new-ca-key.pem")))
	must(t, os.MkdirAll(filepath.Join(dir, "servers"), 0o755))
	f.cluster, err = embedded.Start(embedded.Options{Dir: filepath.Join(dir, "servers"), Servers: servers, ClientCA: f.old.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cluster.Close)
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.cluster.ServerCA.Cert)
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// addClient issues an old leaf for a member, writes it where the member
// reads it, and connects the member. static: the key pair is loaded once
// at start-up (today's code); otherwise the client re-reads its files on
// every dial and reconnects when they change.
func (f *fixture) addClient(id, connName string, static bool) *client {
	f.t.Helper()
	return f.addClientWith(id, connName, static, nil)
}

// addClientWith is addClient with set applied to the client before it
// starts.
func (f *fixture) addClientWith(id, connName string, static bool, set func(*client)) *client {
	f.t.Helper()
	leaf, err := f.old.Issue(id, pki.RoleClient)
	must(f.t, err)
	c := &client{id: id, name: connName, static: static, urls: f.cluster.ClientURLs(), roots: f.roots,
		certFile: f.path(id + ".pem"), keyFile: f.path(id + "-key.pem")}
	if set != nil {
		set(c)
	}
	must(f.t, leaf.WriteFiles(c.certFile, c.keyFile))
	must(f.t, c.start())
	f.t.Cleanup(c.close)
	f.clients[id] = c
	return c
}

// plan is a plan over the fixture: one reload workload of named members,
// one restart workload of unnamed members matched by fingerprint.
func (f *fixture) plan(reload, restart []string) *Plan {
	p := &Plan{
		Name:     "test",
		StateDir: f.path("state"),
		Material: Material{
			ServerCA:    f.cluster.ServerCAFile(),
			OldClientCA: f.path("old-ca.pem"), OldClientCAKey: f.path("old-ca-key.pem"),
			NewClientCA: f.path("new-ca.pem"), NewClientCAKey: f.path("new-ca-key.pem"),
		},
		Timeouts: Timeouts{Reload: 20 * time.Second, Converge: 30 * time.Second, Return: 10 * time.Second},
	}
	gates := GateSpec{Timeout: 20 * time.Second, Settle: 500 * time.Millisecond}
	if len(reload) > 0 {
		w := Workload{Name: "api", Mode: ModeReload, Waves: WaveSpec{Size: 1}, Gates: gates}
		for _, id := range reload {
			c := f.clients[id]
			w.Members = append(w.Members, MemberSpec{Name: c.name, CertFile: c.certFile, KeyFile: c.keyFile})
		}
		p.Workloads = append(p.Workloads, w)
	}
	if len(restart) > 0 {
		w := Workload{Name: "static", Mode: ModeRestart, Waves: WaveSpec{Size: 1}, Gates: gates}
		for _, id := range restart {
			c := f.clients[id]
			w.Members = append(w.Members, MemberSpec{Name: id, Match: MatchFingerprint, CertFile: c.certFile, KeyFile: c.keyFile})
		}
		p.Workloads = append(p.Workloads, w)
	}
	return p
}

func (f *fixture) servers() []Server {
	var out []Server
	for _, s := range f.cluster.Servers {
		out = append(out, EmbeddedServer(s))
	}
	return out
}

// target restarts the fixture's clients by id (restart mode).
type target struct {
	f *fixture
	// hook, when set, runs instead of a restart.
	mu   sync.Mutex
	skip map[string]bool
	// skipRoots: roots deliveries to these members are dropped.
	skipRoots map[string]bool
}

func (tg *target) DeliverRoots(_ context.Context, m Member, roots []byte) error {
	tg.mu.Lock()
	skip := tg.skipRoots[m.Name]
	tg.mu.Unlock()
	if skip {
		return nil // "delivered", but the member never sees it
	}
	return pki.WriteFileAtomic(m.RootsFile, roots, 0o644)
}

func (tg *target) Deliver(_ context.Context, m Member, files Files) error {
	c := tg.f.clients[m.Name]
	if err := pki.WriteFileAtomic(c.keyFile, files.KeyPEM, 0o600); err != nil {
		return err
	}
	return pki.WriteFileAtomic(c.certFile, files.CertPEM, 0o644)
}

func (tg *target) Restart(_ context.Context, m Member) error {
	tg.mu.Lock()
	skip := tg.skip[m.Name]
	tg.mu.Unlock()
	if skip {
		return nil // the restart "succeeds" but nothing happens: the gate must catch it
	}
	return tg.f.clients[m.Name].restart()
}

// client is one member: a real nats.go connection with mTLS.
type client struct {
	id, name          string
	static            bool
	urls              []string
	roots             *x509.CertPool
	certFile, keyFile string
	// rootsFile, when set, is read for the roots at every start, as a
	// start-up-loaded client reads NATS_TLS_CA.
	rootsFile string

	mu       sync.Mutex
	nc       *nats.Conn
	restarts int
	stop     chan struct{}
	done     chan struct{}
}

func (c *client) start() error {
	opts := []nats.Option{
		nats.MaxReconnects(-1), nats.ReconnectWait(200 * time.Millisecond), nats.ReconnectJitter(50*time.Millisecond, 100*time.Millisecond),
		nats.IgnoreAuthErrorAbort(), nats.Timeout(3 * time.Second),
	}
	if c.name != "" {
		opts = append(opts, nats.Name(c.name))
	}
	roots := c.roots
	if c.rootsFile != "" {
		certs, err := pki.ReadCertificates(c.rootsFile)
		if err != nil {
			return err
		}
		roots = pki.Pool(certs)
	}
	if c.static {
		pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
		if err != nil {
			return err
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))
	} else {
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}), nats.ClientCert(c.certFile, c.keyFile))
	}
	nc, err := nats.Connect(joinURLs(c.urls), opts...)
	if err != nil {
		return fmt.Errorf("client %s: %w", c.id, err)
	}
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
	if !c.static {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.watch(nc, c.stop, c.done)
	}
	return nil
}

// watch reconnects when the certificate file changes, as a reloading
// client does; it stops with close.
func (c *client) watch(nc *nats.Conn, stop, done chan struct{}) {
	defer close(done)
	last, _ := os.ReadFile(c.certFile)
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		cur, err := os.ReadFile(c.certFile)
		if err != nil || bytes.Equal(cur, last) {
			continue
		}
		last = cur
		_ = nc.ForceReconnect()
	}
}

func (c *client) restart() error {
	c.close()
	c.mu.Lock()
	c.restarts++
	c.mu.Unlock()
	return c.start()
}

func (c *client) close() {
	c.mu.Lock()
	nc, stop, done := c.nc, c.stop, c.done
	c.nc, c.stop = nil, nil
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	if nc != nil {
		nc.Close()
	}
}

func (c *client) restartCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

func joinURLs(urls []string) string {
	s := ""
	for i, u := range urls {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

// fingerprintOf is the cert_sha256 of a PEM file.
func fingerprintOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return fingerprint(b)
}

// presented lists what every server sees each connection present, as
// fleet reports it (system connections left out).
func (f *fixture) presented(t *testing.T) []fleet.Connection {
	t.Helper()
	obs, err := fleet.New(fleet.Monitor(f.cluster.MonitorURLs()...), fleet.WithSettle(0))
	must(t, err)
	st, err := obs.Poll(context.Background())
	must(t, err)
	var out []fleet.Connection
	for _, c := range st.Connections {
		if !c.System {
			out = append(out, c)
		}
	}
	return out
}
