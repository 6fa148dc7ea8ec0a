package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/pki"
)

func TestClusterAcceptsClientAndReloads(t *testing.T) {
	oldCA, err := pki.NewCA("old clients")
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.NewCA("new clients")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(Options{Dir: t.TempDir(), Servers: 3, ClientCA: oldCA.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	connect := func(ca *pki.CA, url string) (*nats.Conn, error) {
		leaf, err := ca.Issue("client", pki.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		cert := leaf.TLSCertificate()
		return nats.Connect(url,
			nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
			nats.RootCAs(c.ServerCAFile()), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
	}
	nc, err := connect(oldCA, c.Servers[1].ClientURL)
	if err != nil {
		t.Fatalf("old client: %v", err)
	}
	defer nc.Close()
	if _, err := connect(newCA, c.Servers[0].ClientURL); err == nil {
		t.Fatal("new client accepted before trust was extended")
	}
	bundle, err := pki.Bundle(oldCA.CertPEM, newCA.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Servers[0].NATS.ConfigTime()
	if err := c.Servers[0].SetClientCA(bundle); err != nil {
		t.Fatal(err)
	}
	if !c.Servers[0].NATS.ConfigTime().After(before) {
		t.Fatal("config_load_time did not move on reload")
	}
	nc2, err := connect(newCA, c.Servers[0].ClientURL)
	if err != nil {
		t.Fatalf("new client after reload: %v", err)
	}
	nc2.Close()

	// System account works for $SYS requests.
	sysLeaf, _ := oldCA.Issue("natscert", pki.RoleClient)
	cert := sysLeaf.TLSCertificate()
	sys, err := nats.Connect(c.Servers[2].ClientURL, nats.UserInfo(SystemUser, SystemPassword),
		nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
		nats.RootCAs(c.ServerCAFile()))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if _, err := sys.Request("$SYS.REQ.SERVER.PING", nil, 5*time.Second); err != nil {
		t.Fatalf("system ping: %v", err)
	}
}

// A port taken between picking and listening (go test starts clusters in
// many packages at once) makes Start try again on new ports.
func TestStartRetriesTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPorts = func(n int) ([]int, error) {
		picks++
		ports, err := freePorts(n)
		if picks == 1 && err == nil {
			ports[3+2] = busy // n2's cluster port: n1 starts, n2 cannot
		}
		return ports, err
	}
	t.Cleanup(func() { pickPorts = freePorts })
	ca, err := pki.NewCA("clients")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(Options{Dir: t.TempDir(), Servers: 2, ClientCA: ca.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if picks != 2 {
		t.Errorf("ports picked %d times, want 2", picks)
	}
	for _, s := range c.Servers {
		if s.ClusterPort == busy || s.NATS == nil {
			t.Errorf("%s: cluster port %d (taken: %d), running %v", s.Name, s.ClusterPort, busy, s.NATS != nil)
		}
		if got := s.NATS.Addr().(*net.TCPAddr).Port; got != s.Port {
			t.Errorf("%s listens on %d, Port says %d", s.Name, got, s.Port)
		}
	}

	// A restart on a port taken meanwhile fails with the server's reason,
	// instead of waiting for a listener that never comes.
	s := c.Servers[0]
	s.Stop()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
	if err != nil {
		t.Skipf("port %d was taken by someone else: %v", s.Port, err)
	}
	defer l.Close()
	if err := s.Start(); !errors.Is(err, errListen) {
		s.Stop()
		t.Fatalf("restart on a taken port: %v, want errListen", err)
	}
}
