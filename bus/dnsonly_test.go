package bus

import (
	"testing"
	"time"
)

// Server certificates carry the DNS name localhost only; the client is
// given one URL by name and learns the others from the cluster as IPs.
// Losing servers one after the other forces reconnects to learned IPs,
// including ones learned while connected to a learned IP (where nats.go
// forgets the host name). Every handshake must still verify.
func TestDNSOnlyLearnedServers(t *testing.T) {
	f := newFixture(t, 3, true)
	leaf := f.issue(f.ca, "member")
	f.write(leaf)
	var fails failures
	c2, err := connectOne(t, f.cluster.Servers[0].ClientURL, WithName("member"), WithSource(f.source()),
		WithFailureHandler(fails.add), WithBackoff(20*time.Millisecond, 200*time.Millisecond), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	waitFor(t, 10*time.Second, "servers learned", func() bool { return len(c2.Current().DiscoveredServers()) >= 2 })

	on := func() int {
		id := c2.Status().ServerID
		for i, s := range f.cluster.Servers {
			if s.NATS != nil && s.NATS.ID() == id {
				return i
			}
		}
		return -1
	}
	for round := 0; round < 3; round++ {
		i := on()
		if i < 0 {
			t.Fatal("not connected")
		}
		before := c2.Status().Reconnects
		f.cluster.Servers[i].Stop()
		waitFor(t, 15*time.Second, "reconnect to another server", func() bool {
			st := c2.Status()
			return st.Connected && st.Reconnects > before && on() != i
		})
		t.Logf("round %d: moved from n%d to n%d via %s (tls name %s)", round, i+1, on()+1, c2.Status().Server, c2.Status().TLSName)
		if err := f.cluster.Servers[i].Start(); err != nil {
			t.Fatal(err)
		}
		// Let the cluster re-form and the client re-learn the server.
		waitFor(t, 15*time.Second, "server re-learned", func() bool { return len(c2.Current().DiscoveredServers()) >= 2 })
	}
	if n := fails.count(func(f Failure) bool { return f.Reason == ReasonServerCertificate }); n != 0 {
		t.Fatalf("%d server certificate failures:%s", n, fails.String())
	}
	if st := c2.Status(); st.TLSName != "localhost" {
		t.Fatalf("verified against %q, want localhost", st.TLSName)
	}
}
