package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// serverNames decides which name a server's certificate must be valid
// for.
//
// nats.go sets tls.Config.ServerName from the host of the URL it dials.
// Servers learned from a cluster's INFO (connect_urls) are bare IPs;
// nats.go remembers the host name they were learned under only while the
// current URL is a host name, and forgets it for servers learned while
// connected to a learned IP, or re-learned after a restart. A swap also
// dials the IP the old connection uses. So bus verifies the chain itself
// (crypto/tls's VerifyConnection with InsecureSkipVerify, the pattern of
// crypto/tls's own example) and, for an IP the operator did not list, it
// requires the certificate to be valid for one of the host names the
// operator did list.
type serverNames struct {
	override string          // WithServerName
	hosts    []string        // host names of the configured URLs
	ips      map[string]bool // IPs of the configured URLs
}

func newServerNames(urls []string, override string) serverNames {
	sn := serverNames{override: override, ips: map[string]bool{}}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		h := u.Hostname()
		if h == "" {
			continue
		}
		if net.ParseIP(h) != nil {
			sn.ips[h] = true
			continue
		}
		dup := false
		for _, x := range sn.hosts {
			dup = dup || strings.EqualFold(x, h)
		}
		if !dup {
			sn.hosts = append(sn.hosts, h)
		}
	}
	return sn
}

// names lists the names a certificate may be valid for, one of which must
// match. serverName is the SNI crypto/tls sent: the name nats.go set,
// empty when that was an IP; dialed is the address dialed.
func (sn serverNames) names(serverName, dialed string) []string {
	if sn.override != "" {
		return []string{sn.override}
	}
	if serverName != "" {
		return []string{serverName}
	}
	host, _, err := net.SplitHostPort(dialed)
	if err != nil {
		host = dialed
	}
	if host == "" {
		return sn.hosts
	}
	if sn.ips[host] || len(sn.hosts) == 0 || net.ParseIP(host) == nil {
		return []string{host}
	}
	return sn.hosts
}

// verifyServer verifies the server's chain against roots (nil: the system
// roots) and its leaf against one of names. It returns the name that
// matched.
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, names []string) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no certificate presented", ErrServerCertificate)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("%w: %w", ErrServerCertificate, err)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: no host name to verify %q against", ErrServerCertificate, leaf.Subject.CommonName)
	}
	var errs []error
	for _, n := range names {
		err := leaf.VerifyHostname(n)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("%w: %w", ErrServerCertificate, errors.Join(errs...))
}
