package rotation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// loaded is the plan's material, read and checked.
type loaded struct {
	serverRoots *x509.CertPool
	oldCA       []byte
	newCA       []byte
	oldCACerts  []*x509.Certificate
	newCACerts  []*x509.Certificate
	probeOld    tls.Certificate
	probeNew    tls.Certificate
	members     []*memberState
	// pinned: old and new client CA are the same; revoke by pinned_certs.
	pinned       bool
	pinnedExtra  []*x509.Certificate
	pinnedLeaves []*x509.Certificate
	pins         map[string]bool // spki_sha256 of pinnedLeaves
	// serverCA issues the servers' new leaves (material.server_certs).
	serverCA *pki.CA
	// A server CA rotation (material.new_server_ca): the members' roots
	// before and after, and the fingerprints (cert_sha256) of each.
	oldServerCA, newServerCA   []byte
	oldServerFPs, newServerFPs []string
	// oldLeaves and newLeaves classify connections (package fleet).
	oldLeaves, newLeaves *fleet.Material
	// findings are warnings from inspecting the material.
	findings []string
}

// memberState is a member, its files, and what the run did to it.
type memberState struct {
	Member
	workload *Workload
	newFiles Files
	oldFiles *Files // nil when the old key pair could not be read
}

// loadMaterial reads the plan's material, minting what the plan asks to be
// minted into the state directory (once: a resumed run reuses it), and
// backing up each member's current files before anything replaces them.
func loadMaterial(p *Plan) (*loaded, error) {
	l := &loaded{}
	read := func(field, path string) ([]byte, error) {
		b, err := os.ReadFile(p.path(path))
		if err != nil {
			return nil, fmt.Errorf("rotation: %w: %s: %v", ErrPlan, field, err)
		}
		return b, nil
	}
	m := p.Material
	sca, err := read("material.server_ca", m.ServerCA)
	if err != nil {
		return nil, err
	}
	scerts, err := pki.ParseCertificates(sca)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: material.server_ca: %v", ErrPlan, err)
	}
	l.oldServerCA = sca
	l.oldServerFPs = fingerprints(scerts)
	if m.NewServerCA != "" {
		if l.newServerCA, err = read("material.new_server_ca", m.NewServerCA); err != nil {
			return nil, err
		}
		ncerts, err := pki.ParseCertificates(l.newServerCA)
		if err != nil {
			return nil, fmt.Errorf("rotation: %w: material.new_server_ca: %v", ErrPlan, err)
		}
		for _, n := range ncerts {
			for _, o := range scerts {
				if n.Equal(o) {
					return nil, fmt.Errorf("rotation: %w: material.new_server_ca: %s is already in material.server_ca; server_ca is the server CA the members trust today", ErrPlan, n.Subject)
				}
			}
		}
		l.newServerFPs = fingerprints(ncerts)
		// Probes and natscert's system connections verify the servers
		// before, during and after their move.
		scerts = append(scerts, ncerts...)
	}
	l.serverRoots = pki.Pool(scerts)
	if l.oldCA, err = read("material.old_client_ca", m.OldClientCA); err != nil {
		return nil, err
	}
	if l.newCA, err = read("material.new_client_ca", m.NewClientCA); err != nil {
		return nil, err
	}
	oldCerts, fs1 := pki.CheckBundle(l.oldCA, "old client CA", pki.CheckOptions{})
	newCerts, fs2 := pki.CheckBundle(l.newCA, "new client CA", pki.CheckOptions{})
	for _, f := range append(fs1, fs2...) {
		l.findings = append(l.findings, f.String())
	}
	if err := fs2.Err(); err != nil {
		return nil, fmt.Errorf("rotation: %w: material.new_client_ca: %v", ErrPlan, err)
	}
	if err := fs1.Err(); err != nil {
		return nil, fmt.Errorf("rotation: %w: material.old_client_ca: %v", ErrPlan, err)
	}
	l.oldCACerts, l.newCACerts = oldCerts, newCerts
	shared := 0
	for _, o := range oldCerts {
		for _, n := range newCerts {
			if o.Equal(n) {
				shared++
			}
		}
	}
	switch {
	case shared == len(oldCerts) && shared == len(newCerts):
		// Same CA: the leaves rotate, and pinned_certs revokes the old.
		l.pinned = true
	case shared > 0:
		return nil, fmt.Errorf("rotation: %w: material: old and new client CA bundles share a CA but differ; give the same file (same-CA leaf rotation, revoked by pinned_certs) or disjoint CAs", ErrPlan)
	}
	for _, f := range m.Pinned {
		certs, err := pki.ReadCertificates(p.path(f))
		if err != nil {
			return nil, fmt.Errorf("rotation: %w: material.pinned: %v", ErrPlan, err)
		}
		l.pinnedExtra = append(l.pinnedExtra, certs...)
	}
	if sc := m.ServerCerts; sc != nil {
		caFile := or(sc.CA, or(m.NewServerCA, m.ServerCA))
		if l.serverCA, err = pki.LoadCA(p.path(caFile), p.path(sc.CAKey)); err != nil {
			return nil, fmt.Errorf("rotation: %w: material.server_certs: %v", ErrPlan, err)
		}
		trusted := false
		for _, c := range scerts {
			trusted = trusted || c.Equal(l.serverCA.Cert)
		}
		if !trusted {
			return nil, fmt.Errorf("rotation: %w: material.server_certs.ca: %s is in neither material.server_ca nor material.new_server_ca; moving the servers to another CA needs every member to trust it first: name it as material.new_server_ca (a server CA rotation)", ErrPlan, caFile)
		}
	}
	var newIssuer, oldIssuer *pki.CA
	if m.NewClientCAKey != "" {
		if newIssuer, err = pki.LoadCA(p.path(m.NewClientCA), p.path(m.NewClientCAKey)); err != nil {
			return nil, fmt.Errorf("rotation: %w: material.new_client_ca_key: %v", ErrPlan, err)
		}
	}
	if m.OldClientCAKey != "" {
		if oldIssuer, err = pki.LoadCA(p.path(m.OldClientCA), p.path(m.OldClientCAKey)); err != nil {
			return nil, fmt.Errorf("rotation: %w: material.old_client_ca_key: %v", ErrPlan, err)
		}
	}
	state := p.stateDir()
	lifetime := or(m.LeafLifetime, 90*24*time.Hour)
	pair := func(field string, given KeyPair, mintDir, cn string, issuer *pki.CA, roots []*x509.Certificate) (Files, error) {
		if given.Cert != "" {
			c, err := read(field+".cert", given.Cert)
			if err != nil {
				return Files{}, err
			}
			k, err := read(field+".key", given.Key)
			if err != nil {
				return Files{}, err
			}
			return checkPair(field, c, k, roots)
		}
		return mintOnce(filepath.Join(state, mintDir), clientLeaf(issuer, cn, lifetime))
	}
	po, err := pair("material.probe.old", m.Probe.Old, "probe-old", "natscert probe (old)", oldIssuer, oldCerts)
	if err != nil {
		return nil, err
	}
	pn, err := pair("material.probe.new", m.Probe.New, "probe-new", "natscert probe (new)", newIssuer, newCerts)
	if err != nil {
		return nil, err
	}
	if l.probeOld, err = tls.X509KeyPair(po.CertPEM, po.KeyPEM); err != nil {
		return nil, fmt.Errorf("rotation: material.probe.old: %w", err)
	}
	if l.probeNew, err = tls.X509KeyPair(pn.CertPEM, pn.KeyPEM); err != nil {
		return nil, fmt.Errorf("rotation: material.probe.new: %w", err)
	}
	for wi := range p.Workloads {
		w := &p.Workloads[wi]
		for mi, ms := range w.Members {
			field := fmt.Sprintf("workloads[%d].members[%d]", wi, mi)
			st := &memberState{workload: w, Member: Member{
				Workload: w.Name, Name: ms.Name, Match: or(ms.Match, MatchName), Replicas: or(ms.Replicas, 1),
				Mode: w.Mode, CertFile: p.path(ms.CertFile), KeyFile: p.path(ms.KeyFile), RootsFile: p.path(ms.RootsFile),
			}}
			dir := filepath.Join(state, "members", safeName(ms.Name))
			nf, err := pair(field+".new", ms.New, filepath.Join("members", safeName(ms.Name), "new"), ms.Name, newIssuer, newCerts)
			if err != nil {
				return nil, err
			}
			st.newFiles = nf
			st.NewCertSHA256 = fingerprint(nf.CertPEM)
			old, err := oldFiles(p, field, ms, st, dir)
			if err != nil {
				return nil, err
			}
			st.oldFiles = old
			if old != nil {
				st.OldCertSHA256 = fingerprint(old.CertPEM)
			}
			if st.Match == MatchFingerprint && st.OldCertSHA256 == "" {
				return nil, fmt.Errorf("rotation: %w: %s.old: a member matched by fingerprint needs its old leaf (old.cert, or a readable cert_file)", ErrPlan, field)
			}
			if st.OldCertSHA256 == st.NewCertSHA256 && old != nil {
				// Delivered by an earlier run and no backup: the old
				// fingerprint is unknown now.
				return nil, fmt.Errorf("rotation: %s: cert_file already holds the new leaf and there is no backup of the old one", field)
			}
			if ms.Log != "" {
				st.Log = p.path(ms.Log)
			}
			l.members = append(l.members, st)
		}
	}
	if l.pinned {
		l.pinnedLeaves = pinnedLeaves(l.probeNew.Leaf, l.members, l.pinnedExtra)
		l.pins = map[string]bool{}
		for _, c := range l.pinnedLeaves {
			l.pins[pki.SPKISHA256(c)] = true
		}
	}
	l.oldLeaves = leafMaterial(po.CertPEM, l.members, true)
	l.newLeaves = leafMaterial(pn.CertPEM, l.members, false)
	return l, nil
}

// oldFiles finds a member's current key pair: given in the plan, backed up
// by an earlier run, or read from its files (and backed up now).
func oldFiles(p *Plan, field string, ms MemberSpec, st *memberState, dir string) (*Files, error) {
	if ms.Old.Cert != "" {
		c, err := os.ReadFile(p.path(ms.Old.Cert))
		if err != nil {
			return nil, fmt.Errorf("rotation: %w: %s.old.cert: %v", ErrPlan, field, err)
		}
		f := &Files{CertPEM: c}
		if ms.Old.Key != "" {
			if f.KeyPEM, err = os.ReadFile(p.path(ms.Old.Key)); err != nil {
				return nil, fmt.Errorf("rotation: %w: %s.old.key: %v", ErrPlan, field, err)
			}
		}
		return f, nil
	}
	bc, bk := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old-key.pem")
	if c, err := os.ReadFile(bc); err == nil {
		k, _ := os.ReadFile(bk)
		return &Files{CertPEM: c, KeyPEM: k}, nil
	}
	c, err := os.ReadFile(st.CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, nil // remote or unreadable: no backup, no old fingerprint
	}
	k, _ := os.ReadFile(st.KeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rotation: backup %s: %w", ms.Name, err)
	}
	if len(k) > 0 {
		if err := pki.WriteFileAtomic(bk, k, 0o600); err != nil {
			return nil, fmt.Errorf("rotation: backup %s: %w", ms.Name, err)
		}
	}
	if err := pki.WriteFileAtomic(bc, c, 0o600); err != nil {
		return nil, fmt.Errorf("rotation: backup %s: %w", ms.Name, err)
	}
	return &Files{CertPEM: c, KeyPEM: k}, nil
}

// checkPair checks a given key pair: the key matches, and it chains to
// roots for client authentication.
func checkPair(field string, certPEM, keyPEM []byte, roots []*x509.Certificate) (Files, error) {
	_, findings := pki.CheckPair(certPEM, keyPEM, pki.CheckOptions{Issuers: roots, Role: pki.RoleClient})
	if err := findings.Err(); err != nil {
		return Files{}, fmt.Errorf("rotation: %w: %s: %v", ErrPlan, field, err)
	}
	return Files{CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// mintOnce issues a leaf into dir, or reads the one issued there by an
// earlier run.
func mintOnce(dir string, issue func() (*pki.Leaf, error)) (Files, error) {
	if f, err := readMinted(dir); err == nil {
		return f, nil
	}
	leaf, err := issue()
	if err != nil {
		return Files{}, fmt.Errorf("rotation: mint into %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("rotation: mint: %w", err)
	}
	if err := leaf.WriteFiles(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err != nil {
		return Files{}, fmt.Errorf("rotation: mint: %w", err)
	}
	return Files{CertPEM: leaf.CertPEM, KeyPEM: leaf.KeyPEM}, nil
}

// readMinted reads the leaf mintOnce left in dir.
func readMinted(dir string) (Files, error) {
	c, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return Files{}, err
	}
	k, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		return Files{}, err
	}
	return Files{CertPEM: c, KeyPEM: k}, nil
}

// clientLeaf mints a client leaf named cn from issuer.
func clientLeaf(issuer *pki.CA, cn string, lifetime time.Duration) func() (*pki.Leaf, error) {
	return func() (*pki.Leaf, error) {
		if issuer == nil {
			return nil, fmt.Errorf("%w: no CA key to mint %q", ErrPlan, cn)
		}
		return issuer.Issue(cn, pki.RoleClient, pki.WithLifetime(lifetime))
	}
}

func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pki.CertSHA256(c)
	}
	return out
}

func fingerprint(certPEM []byte) string {
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil || len(certs) == 0 {
		return ""
	}
	return pki.CertSHA256(certs[0])
}

// safeName makes a member name usable as a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
