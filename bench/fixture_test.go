package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

type fixture struct {
	dir     string
	ca      *pki.CA
	cluster *embedded.Cluster
	roots   []byte
}

func newFixture(tb testing.TB, servers int) *fixture {
	tb.Helper()
	ca, err := pki.NewCA("bench clients")
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	sdir := filepath.Join(dir, "servers")
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		tb.Fatal(err)
	}
	cl, err := embedded.Start(embedded.Options{Dir: sdir, Servers: servers, ClientCA: ca.CertPEM})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	roots, err := os.ReadFile(cl.ServerCAFile())
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{dir: dir, ca: ca, cluster: cl, roots: roots}
}

func (f *fixture) leaf(tb testing.TB, cn string) *pki.Leaf {
	tb.Helper()
	l, err := f.ca.Issue(cn, pki.RoleClient)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func (f *fixture) tlsConfig(tb testing.TB, leaf *pki.Leaf) *tls.Config {
	roots, err := pki.ParseCertificates(f.roots)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaf.TLSCertificate()}, RootCAs: pki.Pool(roots)}
}

// plain connects with nats.go as services do today.
func (f *fixture) plain(tb testing.TB, url, name string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.Secure(f.tlsConfig(tb, f.leaf(tb, name))),
		nats.MaxReconnects(-1), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return nc
}

func quiet() *slog.Logger {
	if os.Getenv("NATSCERT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// floor times n full mTLS connects (handshake, CONNECT, PING/PONG) made
// by conc dialers at once.
func floor(tb testing.TB, f *fixture, url string, n, conc int) time.Duration {
	tb.Helper()
	cfg := f.tlsConfig(tb, f.leaf(tb, "floor"))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for d := 0; d < conc; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				nc, err := nats.Connect(url, nats.Secure(cfg.Clone()), nats.NoReconnect(), nats.Timeout(5*time.Second))
				if err != nil {
					tb.Error(err)
					return
				}
				nc.Close()
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// switchable is a Source a benchmark sets for many clients at once.
type switchable struct {
	mu   sync.Mutex
	cur  *material.StaticSource
	gen  uint64
	subs map[int]func(material.Event)
	next int
}

func newSwitchable(leaf *pki.Leaf, roots []byte) *switchable {
	s := &switchable{subs: map[int]func(material.Event){}}
	s.set(leaf, roots)
	return s
}

func (s *switchable) set(leaf *pki.Leaf, rootsPEM []byte) {
	roots, _ := pki.ParseCertificates(rootsPEM)
	src := material.NewStaticSource(leaf.TLSCertificate(), roots)
	s.mu.Lock()
	s.gen++
	s.cur = src
	snap := s.snapLocked()
	var fns []func(material.Event)
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(material.Event{Kind: material.EventLoaded, Time: time.Now(), Reason: "bench", Snapshot: snap})
	}
}

func (s *switchable) snapLocked() material.Snapshot {
	snap := s.cur.Snapshot()
	snap.Generation = s.gen
	return snap
}

func (s *switchable) Cert() (tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Cert()
}

func (s *switchable) RootCAs() (*x509.CertPool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.RootCAs()
}

func (s *switchable) Snapshot() material.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapLocked()
}

func (s *switchable) Subscribe(fn func(material.Event)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

func (s *switchable) Refresh(ctx context.Context) error { return ctx.Err() }
func (s *switchable) Close() error                      { return nil }

// ledger counts a client's fan-out deliveries by sequence number.
type ledger struct {
	mu             sync.Mutex
	seen           map[uint64]bool
	max            uint64
	dups, reorders int
}

func (l *ledger) onMsg(m *nats.Msg) {
	if len(m.Data) < 8 {
		return
	}
	seq := binary.BigEndian.Uint64(m.Data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[uint64]bool{}
	}
	if l.seen[seq] {
		l.dups++
		return
	}
	l.seen[seq] = true
	if seq < l.max {
		l.reorders++
	} else {
		l.max = seq
	}
}

func (l *ledger) missing(from, to uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s := from; s <= to; s++ {
		if !l.seen[s] {
			n++
		}
	}
	return n
}

// publisher publishes sequence numbers at rate a second until stop.
func publisher(nc *nats.Conn, rate int, seq *atomic.Uint64, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			want := uint64(now.Sub(start).Seconds() * float64(rate))
			for seq.Load() < want {
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], seq.Add(1))
				_ = nc.Publish("fan", b[:])
			}
		}
	}
}

type netConn = net.Conn

var dialer = &net.Dialer{Timeout: 2 * time.Second}

func kickAll(s *embedded.Server) {
	cz, _ := s.NATS.Connz(&server.ConnzOptions{Limit: 100000})
	for _, c := range cz.Conns {
		_ = s.NATS.DisconnectClientByID(c.Cid)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func splitInts(s string) []int {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			out = append(out, n)
		}
	}
	return out
}
