package bus

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/pki"
)

func connectTest(t *testing.T, f *fixture, name string, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, f.urls(), append([]Option{WithName(name), WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Same-CA leaf rotation and CA rotation with overlap, under the reconnect
// strategy: the server sees the new certificate without a restart.
func TestRotationReconnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newCA bool
	}{{"same CA leaf", false}, {"new CA with overlap", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, false)
			old := f.issue(f.ca, "member")
			f.write(old)
			var fails failures
			c := connectTest(t, f, "member", WithSource(f.source()), WithStrategy(StrategyReconnect), WithSpread(50*time.Millisecond),
				WithFailureHandler(fails.add))
			waitFor(t, 10*time.Second, "old certificate in connz", func() bool {
				p := f.presented("member")
				return len(p) == 1 && p[0] == fp(old)
			})
			issuer := f.ca
			if tc.newCA {
				next, err := pki.NewCA("bus test clients 2")
				if err != nil {
					t.Fatal(err)
				}
				bundle, err := pki.Bundle(f.ca.CertPEM, next.CertPEM)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.cluster.Servers[0].SetClientCA(bundle); err != nil {
					t.Fatal(err)
				}
				issuer = next
			}
			for round := 0; round < 2; round++ {
				leaf := f.issue(issuer, "member")
				f.write(leaf)
				waitFor(t, 15*time.Second, "new certificate in connz", func() bool {
					p := f.presented("member")
					return len(p) == 1 && p[0] == fp(leaf)
				})
				waitFor(t, 5*time.Second, "status", func() bool {
					st := c.Status()
					return st.Presented != nil && st.Presented.CertSHA256 == fp(leaf)
				})
			}
			// A busy machine may time an attempt out; no certificate may be
			// refused, either way.
			if n := fails.count(func(f Failure) bool {
				return f.Reason == ReasonRejected || f.Reason == ReasonServerCertificate
			}); n != 0 {
				t.Fatalf("%d certificates refused:%s", n, fails.String())
			}
		})
	}
}

// Trust moves to a new CA only and the clients are kicked. A bus client
// recovers once its new files land; a start-up-loaded client (today's
// code) makes many more failed attempts over the same window and never
// recovers. Both clocks are scaled down alike (bus backoff 5 ms..2 s,
// ReconnectWait 50 ms), and the window is counted in the static client's
// attempts, so that a slow machine stretches it for both. The rate itself
// is measured in bench (TestLoadFailedHandshakeRate).
func TestTrustMovedRecovery(t *testing.T) {
	f := newFixture(t, 1, false)
	old := f.issue(f.ca, "member")
	f.write(old)
	var fails failures
	c := connectTest(t, f, "member", WithSource(f.source()), WithBackoff(5*time.Millisecond, 2*time.Second),
		WithFailureHandler(fails.add))

	// Today's code, scaled: ReconnectWait 50 ms (+ nats.go's TLS jitter).
	cert := old.TLSCertificate()
	roots, err := pki.ReadCertificates(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	var dials countingDialer
	static, err := nats.Connect(f.urls(), nats.Name("static"), nats.SetCustomDialer(&dials),
		nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pki.Pool(roots)}),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 25*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()

	next, err := pki.NewCA("bus test clients 2")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cluster.Servers[0].SetClientCA(next.CertPEM); err != nil {
		t.Fatal(err)
	}
	f.kick("member")
	f.kick("static")
	waitFor(t, 5*time.Second, "both disconnected", func() bool { return !c.Status().Connected && !static.IsConnected() })

	// Past the ramp: after 9 failures bus's ceiling is at its cap.
	waitFor(t, 30*time.Second, "bus backoff at its cap", func() bool { return c.Status().FailedAttempts >= 9 })
	busBefore, staticBefore := c.Status().FailedAttempts, dials.n.Load()
	waitFor(t, 60*time.Second, "40 attempts of the static client", func() bool { return dials.n.Load()-staticBefore >= 40 })
	busN, staticN := c.Status().FailedAttempts-busBefore, dials.n.Load()-staticBefore
	t.Logf("failed attempts over the window: bus %d, start-up-loaded %d", busN, staticN)
	// Expected about 12 times; 3 leaves room for a busy machine.
	if staticN < 3*int64(busN) {
		t.Fatalf("bus %d vs static %d failed attempts: want static >= 3x bus", busN, staticN)
	}
	// None silent: every failed attempt reached the failure handler, as
	// refused (or, on a busy machine, timed out).
	waitFor(t, 5*time.Second, "every failure reported", func() bool {
		return uint64(fails.count(func(f Failure) bool { return f.Attempt })) == c.Status().FailedAttempts
	})
	if n := fails.count(func(f Failure) bool {
		return f.Attempt && f.Reason != ReasonRejected && f.Reason != ReasonTimeout
	}); n != 0 {
		t.Fatalf("%d attempt failures neither rejected nor timed out:%s", n, fails.String())
	}

	leaf := f.issue(next, "member")
	landed := time.Now()
	f.write(leaf)
	waitFor(t, 10*time.Second, "bus client back on the new certificate", func() bool {
		p := f.presented("member")
		return len(p) == 1 && p[0] == fp(leaf)
	})
	t.Logf("good files landing to reconnected: %s", time.Since(landed).Round(time.Millisecond))
	// The static client had the same window and more: it keeps failing.
	after := dials.n.Load()
	waitFor(t, 10*time.Second, "more attempts of the static client", func() bool { return dials.n.Load() >= after+3 })
	if static.IsConnected() {
		t.Fatal("start-up-loaded client recovered, which it cannot")
	}
}

// Bad files written mid-run: the connection stays up on the last good
// material, and the failure is reported.
func TestBadFilesKeepConnection(t *testing.T) {
	f := newFixture(t, 1, false)
	good := f.issue(f.ca, "member")
	f.write(good)
	var fails failures
	c := connectTest(t, f, "member", WithSource(f.source()), WithFailureHandler(fails.add), WithSpread(0))
	if err := os.WriteFile(f.certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "material failure reported", func() bool {
		return fails.count(func(f Failure) bool { return f.Reason == ReasonMaterial }) > 0
	})
	// A kick makes it reconnect: with the last good material.
	f.kick("member")
	waitFor(t, 10*time.Second, "reconnected", func() bool { return c.Status().Reconnects > 0 && c.Status().Connected })
	st := c.Status()
	if st.Presented == nil || st.Presented.CertSHA256 != fp(good) || st.MaterialRejected == 0 {
		t.Fatalf("status %+v", st)
	}
	if p := f.presented("member"); len(p) != 1 || p[0] != fp(good) {
		t.Fatalf("connz %v", p)
	}
	if err := c.Publish("x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
