package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// bus verifies the server's certificate itself (InsecureSkipVerify with
// VerifyConnection): it must refuse what crypto/tls would refuse, and
// accept what the names it allows match.
func TestServerVerification(t *testing.T) {
	f := newFixture(t, 1, false)
	f.write(f.issue(f.ca, "member"))
	src := f.source()
	s := f.cluster.Servers[0]
	serverCA := f.cluster.ServerCA
	other, err := pki.NewCA("not the servers' CA")
	if err != nil {
		t.Fatal(err)
	}
	loopback := pki.WithIPs(net.IPv4(127, 0, 0, 1))
	byIP := fmt.Sprintf("tls://127.0.0.1:%d", s.Port)
	byName := fmt.Sprintf("tls://localhost:%d", s.Port)
	past := time.Now().Add(-48 * time.Hour)
	for _, tc := range []struct {
		name   string
		ca     *pki.CA
		sans   []pki.Option
		url    string
		opts   []Option
		tlsFor string // the name verified; empty: refused
	}{
		{"trusted, by IP", serverCA, []pki.Option{pki.WithDNSNames("localhost"), loopback}, byIP, nil, "127.0.0.1"},
		{"untrusted CA", other, []pki.Option{pki.WithDNSNames("localhost"), loopback}, byIP, nil, ""},
		{"wrong DNS name", serverCA, []pki.Option{pki.WithDNSNames("other.example")}, byName, nil, ""},
		{"expired", serverCA, []pki.Option{pki.WithDNSNames("localhost"), loopback, pki.WithValidity(past, past.Add(time.Hour))}, byIP, nil, ""},
		{"IP URL, DNS-only certificate", serverCA, []pki.Option{pki.WithDNSNames("localhost")}, byIP, nil, ""},
		{"DNS-only certificate, by name", serverCA, []pki.Option{pki.WithDNSNames("localhost")}, byName, nil, "localhost"},
		{"WithServerName", serverCA, []pki.Option{pki.WithDNSNames("nats.internal")}, byIP, []Option{WithServerName("nats.internal")}, "nats.internal"},
		{"WithServerName, certificate for others", serverCA, []pki.Option{pki.WithDNSNames("localhost"), loopback}, byIP, []Option{WithServerName("nats.internal")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := tc.ca.Issue("server", pki.RoleServer, tc.sans...)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetCertificate(leaf); err != nil {
				t.Fatal(err)
			}
			// The first failed attempt ends Connect.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var first *Failure
			onFailure := func(fl Failure) {
				if first == nil && fl.Attempt {
					first = &fl
					cancel()
				}
			}
			c, err := Connect(ctx, tc.url, append([]Option{WithSource(src), WithName("verify"), WithLogger(testLogger(t)),
				WithFailureHandler(onFailure)}, tc.opts...)...)
			if tc.tlsFor != "" {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if got := c.Status().TLSName; got != tc.tlsFor {
					t.Fatalf("verified against %q, want %q", got, tc.tlsFor)
				}
				return
			}
			if err == nil {
				_ = c.Close()
				t.Fatal("connected")
			}
			// Connect has returned: run, which set first, has ended.
			if first == nil || first.Reason != ReasonServerCertificate || !errors.Is(first.Err, ErrServerCertificate) {
				t.Fatalf("first failure %+v, want %s wrapping ErrServerCertificate", first, ReasonServerCertificate)
			}
		})
	}
}

// names: which names a server's certificate may be valid for.
func TestServerNames(t *testing.T) {
	urls := []string{"tls://nats.example:4222", "tls://NATS.example:4223", "tls://10.0.0.1:4222"}
	sn := newServerNames(urls, "")
	for _, tc := range []struct {
		sni, dialed string
		want        []string
	}{
		{"nats.example", "10.9.9.9:4222", []string{"nats.example"}}, // nats.go's SNI wins
		{"", "10.0.0.1:4222", []string{"10.0.0.1"}},                 // a listed IP: itself
		{"", "10.0.0.2:4222", []string{"nats.example"}},             // a learned IP: the listed host names
		{"", "other.example:4222", []string{"other.example"}},       // a host name: itself
		{"", "", []string{"nats.example"}},                          // nothing known: the listed host names
	} {
		if got := sn.names(tc.sni, tc.dialed); !slices.Equal(got, tc.want) {
			t.Errorf("names(%q, %q) = %v, want %v", tc.sni, tc.dialed, got, tc.want)
		}
	}
	ipOnly := newServerNames([]string{"tls://10.0.0.1:4222"}, "")
	if got := ipOnly.names("", "10.0.0.2:4222"); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("no host names listed: a learned IP is verified as itself, got %v", got)
	}
	override := newServerNames(urls, "nats.internal")
	if got := override.names("nats.example", "10.0.0.2:4222"); !slices.Equal(got, []string{"nats.internal"}) {
		t.Errorf("WithServerName: got %v", got)
	}
}
