package fleet_test

import (
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

// fixture is a real embedded cluster that trusts three client CAs: old,
// new, and other (certificates the operator knows nothing about).
type fixture struct {
	c                   *embedded.Cluster
	oldCA, newCA, other *pki.CA
}

func newFixture(t testing.TB, servers int) *fixture {
	t.Helper()
	f := &fixture{}
	var err error
	for _, p := range []struct {
		ca **pki.CA
		cn string
	}{{&f.oldCA, "old clients"}, {&f.newCA, "new clients"}, {&f.other, "other clients"}} {
		if *p.ca, err = pki.NewCA(p.cn); err != nil {
			t.Fatal(err)
		}
	}
	bundle, err := pki.Bundle(f.oldCA.CertPEM, f.newCA.CertPEM, f.other.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	f.c, err = embedded.Start(embedded.Options{Dir: t.TempDir(), Servers: servers, ClientCA: bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.c.Close)
	return f
}

func issue(t testing.TB, ca *pki.CA, cn string) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(cn, pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// dial connects one client presenting leaf; name may be empty, as
// start-up-loaded legacy clients often leave it.
func (f *fixture) dial(t testing.TB, url string, leaf *pki.Leaf, name string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	cert := leaf.TLSCertificate()
	o := []nats.Option{
		nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
		nats.RootCAs(f.c.ServerCAFile()), nats.Timeout(20 * time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond),
	}
	if name != "" {
		o = append(o, nats.Name(name))
	}
	return nats.Connect(url, append(o, opts...)...)
}

func (f *fixture) mustDial(t testing.TB, url string, leaf *pki.Leaf, name string) *nats.Conn {
	t.Helper()
	nc, err := f.dial(t, url, leaf, name)
	if err != nil {
		t.Fatalf("dial %s as %q: %v", url, name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// client says how the i-th of many clients connects.
type client struct {
	url  string
	leaf *pki.Leaf
	name string
}

// dialMany opens n connections with a bounded number of concurrent
// dialers: a TLS handshake costs about a millisecond of CPU on each side.
func (f *fixture) dialMany(t testing.TB, n int, spec func(i int) client) []*nats.Conn {
	t.Helper()
	conns := make([]*nats.Conn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := spec(i)
				conns[i], errs[i] = f.dial(t, c.url, c.leaf, c.name)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("dial client %d: %v", i, err)
		}
	}
	return conns
}

// system connects to the system account, presenting a leaf of other.
func (f *fixture) system(t testing.TB, server int) *nats.Conn {
	t.Helper()
	cert := issue(t, f.other, "natscert-sys").TLSCertificate()
	nc, err := nats.Connect(f.c.Servers[server].ClientURL,
		nats.UserInfo(embedded.SystemUser, embedded.SystemPassword),
		nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
		nats.RootCAs(f.c.ServerCAFile()), nats.Name("natscert-sys"))
	if err != nil {
		t.Fatalf("system connection: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitConns polls until the servers together list want client
// connections, so tests start from a view that has caught up.
func (f *fixture) waitConns(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := 0
		for _, s := range f.c.Servers {
			if s.NATS != nil {
				got += s.NATS.NumClients()
			}
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers list %d client connections, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}
