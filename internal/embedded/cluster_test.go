package embedded

import (
	"crypto/tls"
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
