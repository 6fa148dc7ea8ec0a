package bench

import (
	"crypto/tls"
	"log/slog"
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
	"github.com/natscert/natscert/internal/seqledger"
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
				_ = nc.Publish("fan", seqledger.Append(nil, seq.Add(1)))
			}
		}
	}
}

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
