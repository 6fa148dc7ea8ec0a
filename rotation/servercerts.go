package rotation

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/natscert/natscert/pki"
)

// serverCerts renews every server's own certificate, from the same server
// CA or (a server CA rotation) from the new one: it writes each server's new leaf, reloads, and observes on every
// server tls_cert_not_after (varz) and the certificate a probe is shown
// in the TLS handshake change to the new leaf. Members' connections must
// survive it: a server reload applies a new certificate to new handshakes
// only.
func (r *Runner) serverCerts(ctx context.Context) (string, error) {
	before, err := r.look(ctx, r.mat.members)
	if err != nil {
		return "", err
	}
	kept := map[string]string{} // server id/cid -> member
	for i := range before.Connections {
		c := &before.Connections[i]
		if m := r.memberOf(c); m != nil && !c.System {
			kept[connKey(c)] = m.Name
		}
	}
	loads, err := r.loadTimes(ctx)
	if err != nil {
		return "", err
	}
	want := map[string]*x509.Certificate{}
	for _, s := range r.servers {
		leaf, err := r.serverLeaf(ctx, s)
		if err != nil {
			return "", err
		}
		if r.plan.Material.NewServerCA != "" {
			if err := r.backupServerCert(ctx, s); err != nil {
				return "", err
			}
		}
		want[s.Name()] = leaf.Cert
		if err := r.putServerCert(ctx, PhaseServerCerts, s, leaf.CertPEM, leaf.KeyPEM); err != nil {
			return "", err
		}
	}
	notes, err := r.waitServerCerts(ctx, loads, want)
	if err != nil {
		return "", err
	}
	after, err := r.look(ctx, r.mat.members)
	if err != nil {
		return "", err
	}
	for i := range after.Connections {
		delete(kept, connKey(&after.Connections[i]))
	}
	if len(kept) > 0 {
		var lost []string
		for k, m := range kept {
			lost = append(lost, m+" ("+k+")")
		}
		return "", fmt.Errorf("rotation: %w: members disconnected by the server certificate reload: %s", ErrPhaseFailed, strings.Join(lost, ", "))
	}
	return fmt.Sprintf("%s; every member connection kept across the reload", notes), nil
}

// putServerCert writes a server's certificate and key and reloads it.
func (r *Runner) putServerCert(ctx context.Context, phase string, s Server, certPEM, keyPEM []byte) error {
	if err := s.WriteServerCert(ctx, certPEM, keyPEM); err != nil {
		return fmt.Errorf("rotation: %w: %s: %w", ErrPhaseFailed, s.Name(), err)
	}
	if err := s.Reload(ctx); err != nil {
		r.emit(Event{Kind: ServerReloaded, Phase: phase, Server: s.Name(), Detail: err.Error()})
		return fmt.Errorf("rotation: %w: reload of %s failed: %w", ErrPhaseFailed, s.Name(), err)
	}
	r.emit(Event{Kind: ServerReloaded, Phase: phase, Server: s.Name(), OK: true, Detail: "certificate " + short(fingerprint(certPEM))})
	return nil
}

// waitServerCerts waits until every server has reloaded since loads and
// presents the certificate want names for it: in /varz
// tls_cert_not_after, and to a probe in the TLS handshake.
func (r *Runner) waitServerCerts(ctx context.Context, loads map[string]time.Time, want map[string]*x509.Certificate) (string, error) {
	timeout := or(r.plan.Timeouts.Reload, 30*time.Second)
	deadline := time.Now().Add(timeout)
	for {
		var pending, notes []string
		unread := 0 // pending reasons that are a server not read or not reached
		ids, ierr := r.identities(ctx)
		for _, s := range r.servers {
			cert, v := want[s.Name()], ids[s.Name()]
			switch {
			case v.Key == "":
				pending = append(pending, fmt.Sprintf("%s: not readable: %v", s.Name(), ierr))
				unread++
			case !v.ConfigLoadTime.After(loads[s.Name()]):
				pending = append(pending, s.Name()+": config_load_time unchanged (reload not taken)")
			case !v.TLSCertNotAfter.Equal(cert.NotAfter):
				pending = append(pending, fmt.Sprintf("%s: tls_cert_not_after %s, want %s", s.Name(),
					v.TLSCertNotAfter.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339)))
			default:
				pr := r.probe(ctx, s, "new")
				if fp := pki.CertSHA256(cert); pr.ServerCertSHA256 != fp {
					pending = append(pending, fmt.Sprintf("%s: presents %s, want %s (%s)", s.Name(), short(pr.ServerCertSHA256), short(fp), pr.Outcome))
					if pr.ServerCertSHA256 == "" {
						unread++ // no handshake: nothing presented to compare
					}
					continue
				}
				notes = append(notes, fmt.Sprintf("%s: presents %s, not after %s", s.Name(), short(pr.ServerCertSHA256), v.TLSCertNotAfter.Format(time.RFC3339)))
			}
		}
		if len(pending) == 0 {
			return strings.Join(notes, "; "), nil
		}
		if time.Now().After(deadline) || !sleep(ctx, r.poll) {
			return "", fmt.Errorf("rotation: %w: server certificates not observed within %s: %s", watchErr(pending, unread), timeout, strings.Join(pending, "; "))
		}
	}
}

// serverLeaf is the new leaf of s: minted once into the state directory
// (a resumed run reuses it) from the plan's server CA, with the names of
// the certificate s presents now.
func (r *Runner) serverLeaf(ctx context.Context, s Server) (*pki.Leaf, error) {
	dir := filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "new")
	if f, err := readMinted(dir); err == nil {
		return leafOf(f)
	}
	pr := r.probe(ctx, s, "new")
	if pr.serverCert == nil {
		return nil, fmt.Errorf("rotation: %w: %s: cannot read its certificate: %s %s", ErrIncomplete, s.Name(), pr.Outcome, pr.Detail)
	}
	cur := pr.serverCert
	lifetime := or(or(r.plan.Material.ServerCerts.Lifetime, r.plan.Material.LeafLifetime), 90*24*time.Hour)
	f, err := mintOnce(dir, func() (*pki.Leaf, error) {
		return r.mat.serverCA.Issue(cur.Subject.CommonName, pki.RoleServer, pki.WithLifetime(lifetime),
			pki.WithDNSNames(cur.DNSNames...), pki.WithIPs(cur.IPAddresses...), pki.WithURIs(cur.URIs...))
	})
	if err != nil {
		return nil, err
	}
	return leafOf(f)
}

// newServerCert is the leaf serverCerts minted for s, nil when none was.
func (r *Runner) newServerCert(s Server) *x509.Certificate {
	f, err := readMinted(filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "new"))
	if err != nil {
		return nil
	}
	l, err := leafOf(f)
	if err != nil {
		return nil
	}
	return l.Cert
}

func leafOf(f Files) (*pki.Leaf, error) {
	certs, err := pki.ParseCertificates(f.CertPEM)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("rotation: minted server certificate: %v", err)
	}
	return &pki.Leaf{Cert: certs[0], CertPEM: f.CertPEM, KeyPEM: f.KeyPEM}, nil
}

// pinnedLeaves are the client leaves a same-CA rotation keeps accepted:
// the new member leaves, the new probe (natscert's own connections to the
// servers present it), and the plan's extra certificates.
func pinnedLeaves(probeNew *x509.Certificate, members []*memberState, extra []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{probeNew}
	for _, m := range members {
		if l, err := leafOf(m.newFiles); err == nil {
			out = append(out, l.Cert)
		}
	}
	return append(out, extra...)
}

// pinnedConf is the tls include that revokes the old leaves of a same-CA
// rotation: pinned_certs holds the SPKI sha256 of every pinned leaf.
func (r *Runner) pinnedConf() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by natscert (rotation %q): only these client leaves are accepted.\npinned_certs: [\n", r.plan.Name)
	seen := map[string]bool{}
	for _, c := range r.mat.pinnedLeaves {
		fp := pki.SPKISHA256(c)
		if !seen[fp] {
			seen[fp] = true
			fmt.Fprintf(&b, "  %q # %s\n", fp, strings.ReplaceAll(c.Subject.CommonName, "\n", " "))
		}
	}
	b.WriteString("]\n")
	return []byte(b.String())
}
