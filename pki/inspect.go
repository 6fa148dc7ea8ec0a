package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Severity ranks a finding. Only SeverityError makes material unusable.
type Severity string

// Severities of findings.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// Finding codes. They are stable: scripts and tests match on them.
const (
	CodeCertUnparsable    = "cert-unparsable"
	CodeKeyUnparsable     = "key-unparsable"
	CodeKeyMismatch       = "key-mismatch"
	CodeExpired           = "expired"
	CodeNotYetValid       = "not-yet-valid"
	CodeExpiringSoon      = "expiring-soon"
	CodeUnknownIssuer     = "unknown-issuer"
	CodeChainInvalid      = "chain-invalid"
	CodeWrongUsage        = "wrong-usage"
	CodeIsCA              = "leaf-is-ca"
	CodeNoSANs            = "no-sans"
	CodeKeyFileMode       = "key-file-mode"
	CodeBundleUnparsable  = "bundle-unparsable"
	CodeBundleNotCA       = "bundle-not-ca"
	CodeBundleExpired     = "bundle-expired"
	CodeBundleNotYetValid = "bundle-not-yet-valid"
	CodeBundleExpiring    = "bundle-expiring-soon"
)

// Finding is one problem (or note) about a piece of material.
type Finding struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	// What names the piece: cert, key, issuer or roots.
	What    string `json:"what"`
	File    string `json:"file,omitempty"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	where := f.What
	if f.File != "" {
		where = f.What + " " + f.File
	}
	return fmt.Sprintf("%s %s (%s): %s", f.Severity, f.Code, where, f.Message)
}

// Findings is a list of findings with helpers for callers that branch.
type Findings []Finding

// HasErrors reports whether any finding has error severity.
func (fs Findings) HasErrors() bool { return fs.Err() != nil }

// Err joins the error-severity findings into one error, or returns nil.
func (fs Findings) Err() error {
	var msgs []string
	for _, f := range fs {
		if f.Severity == SeverityError {
			msgs = append(msgs, f.Code+": "+f.Message)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &InvalidError{Findings: fs, msg: strings.Join(msgs, "; ")}
}

// InvalidError is returned for material with error-severity findings.
type InvalidError struct {
	Findings Findings
	msg      string
}

func (e *InvalidError) Error() string { return e.msg }

// ErrInvalid matches any *InvalidError with errors.Is.
var ErrInvalid = errors.New("invalid material")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// CheckOptions says what a piece of material is checked against.
type CheckOptions struct {
	// Role the leaf must fit (its extended key usage). Empty means client.
	Role Role
	// Issuers, when set, must verify the leaf's chain.
	Issuers []*x509.Certificate
	// Now is the time validity is checked against; zero means time.Now().
	Now time.Time
	// Skew tolerates clocks that differ a little: a leaf not valid for
	// another Skew is accepted. Zero means none.
	Skew time.Duration
	// WarnWithin warns about certificates that expire within it.
	WarnWithin time.Duration
}

func (o CheckOptions) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// CheckPair parses a certificate (leaf first, intermediates after) and its
// private key, and checks them: the key matches, the leaf is in its
// validity window, fits the role, and chains to the issuers when given.
// The tls.Certificate is usable only when the findings hold no error.
func CheckPair(certPEM, keyPEM []byte, o CheckOptions) (tls.Certificate, Findings) {
	var fs Findings
	add := func(code string, sev Severity, what, format string, args ...any) {
		fs = append(fs, Finding{Code: code, Severity: sev, What: what, Message: fmt.Sprintf(format, args...)})
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		add(CodeCertUnparsable, SeverityError, "cert", "not a readable PEM certificate: %v", err)
	}
	key, kerr := parseKey(keyPEM)
	if kerr != nil {
		add(CodeKeyUnparsable, SeverityError, "key", "not a readable PEM private key: %v", kerr)
	}
	if err != nil {
		return tls.Certificate{}, fs
	}
	leaf := certs[0]
	if kerr == nil && !PublicKeysEqual(leaf.PublicKey, key.Public()) {
		add(CodeKeyMismatch, SeverityError, "key", "the private key belongs to another certificate, not to %q (%s)", leaf.Subject.String(), short(CertSHA256(leaf)))
	}
	fs = append(fs, checkLeaf(leaf, certs[1:], o)...)
	if fs.HasErrors() {
		return tls.Certificate{}, fs
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, fs
}

func checkLeaf(leaf *x509.Certificate, intermediates []*x509.Certificate, o CheckOptions) Findings {
	var fs Findings
	add := func(code string, sev Severity, format string, args ...any) {
		fs = append(fs, Finding{Code: code, Severity: sev, What: "cert", Message: fmt.Sprintf(format, args...)})
	}
	now := o.now()
	role := o.Role
	if role == "" {
		role = RoleClient
	}
	switch {
	case now.After(leaf.NotAfter.Add(o.Skew)):
		add(CodeExpired, SeverityError, "expired %s ago, at %s", age(now.Sub(leaf.NotAfter)), leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Add(o.Skew).Before(leaf.NotBefore):
		add(CodeNotYetValid, SeverityError, "not valid until %s (in %s)", leaf.NotBefore.UTC().Format(time.RFC3339), age(leaf.NotBefore.Sub(now)))
	case o.WarnWithin > 0 && leaf.NotAfter.Sub(now) < o.WarnWithin:
		add(CodeExpiringSoon, SeverityWarning, "expires in %s, at %s", age(leaf.NotAfter.Sub(now)), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if leaf.IsCA {
		add(CodeIsCA, SeverityWarning, "a CA certificate is used as a %s leaf", role)
	}
	if !usageFits(leaf, role) {
		add(CodeWrongUsage, SeverityError, "extended key usage is %s; a %s needs %s", usageNames(leaf), role, role.extKeyUsage().String())
	}
	if role == RoleServer && len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.URIs) == 0 {
		add(CodeNoSANs, SeverityWarning, "no subject alternative names: clients that verify host names will reject it")
	}
	if len(o.Issuers) > 0 {
		pool := Pool(o.Issuers)
		inter := Pool(intermediates)
		// Verify at a moment inside every window, so that trust problems are
		// reported as such and expiry stays its own finding.
		at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		if now.After(leaf.NotBefore) && now.Before(leaf.NotAfter) {
			at = now
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		var ua x509.UnknownAuthorityError
		switch {
		case err == nil:
		case errors.As(err, &ua):
			add(CodeUnknownIssuer, SeverityError, "issued by %q, which is not in the issuer bundle (it holds %s)", leaf.Issuer.String(), subjects(o.Issuers))
		default:
			add(CodeChainInvalid, SeverityError, "chain does not verify against the issuer bundle: %v", err)
		}
	}
	return fs
}

// CheckBundle parses a CA bundle (what names it: "roots" or "issuer") and
// checks that every entry is a CA inside its validity window.
func CheckBundle(data []byte, what string, o CheckOptions) ([]*x509.Certificate, Findings) {
	var fs Findings
	add := func(code string, sev Severity, format string, args ...any) {
		fs = append(fs, Finding{Code: code, Severity: sev, What: what, Message: fmt.Sprintf(format, args...)})
	}
	certs, err := parseCertificates(data)
	if err != nil {
		add(CodeBundleUnparsable, SeverityError, "not a readable PEM bundle: %v", err)
		return nil, fs
	}
	now := o.now()
	for i, c := range certs {
		name := fmt.Sprintf("entry %d %q", i+1, c.Subject.String())
		if !c.IsCA {
			add(CodeBundleNotCA, SeverityError, "%s is a leaf certificate, not a CA; a %s bundle must hold CA certificates only", name, what)
			continue
		}
		switch {
		case now.After(c.NotAfter.Add(o.Skew)):
			add(CodeBundleExpired, SeverityError, "%s expired at %s", name, c.NotAfter.UTC().Format(time.RFC3339))
			continue
		case now.Add(o.Skew).Before(c.NotBefore):
			add(CodeBundleNotYetValid, SeverityError, "%s is not valid until %s", name, c.NotBefore.UTC().Format(time.RFC3339))
			continue
		case o.WarnWithin > 0 && c.NotAfter.Sub(now) < o.WarnWithin:
			add(CodeBundleExpiring, SeverityWarning, "%s expires in %s", name, age(c.NotAfter.Sub(now)))
		}
	}
	if fs.HasErrors() {
		return nil, fs
	}
	return certs, fs
}

// DefaultClockSkew is how far clocks may differ before a validity window
// counts as missed: what material.FileSource tolerates by default, and
// natscert inspect too, so that both judge the same files the same way.
const DefaultClockSkew = time.Minute

// SetPEM is one set of material as read from its files. A nil field is a
// file that is not configured; an empty one is configured and empty.
type SetPEM struct {
	Cert   []byte // leaf first, then intermediates
	Key    []byte
	Roots  []byte // the CAs that verify the peer
	Issuer []byte // the CAs that issued Cert
}

// Set is what CheckSet read of a SetPEM.
type Set struct {
	// Cert is the key pair to present; empty when no certificate is
	// configured or the pair did not check.
	Cert tls.Certificate
	// Leaf is the parsed leaf, also when the pair did not check; nil when
	// no certificate parsed.
	Leaf *x509.Certificate
	// Roots and Issuers are what parsed of the bundles, also when they did
	// not check.
	Roots, Issuers []*x509.Certificate
}

// CheckSet checks a set of material as a process should before it serves
// it: the issuer and roots bundles, then the certificate and key, the
// leaf's chain verified against the issuer bundle when there is one (or
// against o.Issuers). Every finding's What names the piece at fault: cert,
// key, roots or issuer (see Findings.WithFiles). The set is fit to serve
// only when the findings hold no error; what parsed is returned anyway, to
// describe it.
func CheckSet(in SetPEM, o CheckOptions) (Set, Findings) {
	var set Set
	var fs Findings
	if in.Issuer != nil {
		issuers, ifs := CheckBundle(in.Issuer, "issuer", o)
		fs = append(fs, ifs...)
		if issuers == nil {
			// Still check the leaf against what parses, so that every
			// problem is reported at once.
			issuers, _ = parseCertificates(in.Issuer)
		}
		set.Issuers, o.Issuers = issuers, issuers
	}
	if in.Roots != nil {
		roots, rfs := CheckBundle(in.Roots, "roots", o)
		fs = append(fs, rfs...)
		if roots == nil {
			roots, _ = parseCertificates(in.Roots)
		}
		set.Roots = roots
	}
	if in.Cert != nil || in.Key != nil {
		cert, pfs := CheckPair(in.Cert, in.Key, o)
		fs = append(fs, pfs...)
		set.Cert, set.Leaf = cert, cert.Leaf
		if set.Leaf == nil {
			if certs, err := parseCertificates(in.Cert); err == nil {
				set.Leaf = certs[0]
			}
		}
	}
	return set, fs
}

// WithFiles names the file of every finding by the piece it is about;
// an empty name leaves File as it is.
func (fs Findings) WithFiles(cert, key, roots, issuer string) Findings {
	for i := range fs {
		var file string
		switch fs[i].What {
		case "cert":
			file = cert
		case "key":
			file = key
		case "roots":
			file = roots
		case "issuer":
			file = issuer
		}
		if file != "" {
			fs[i].File = file
		}
	}
	return fs
}

// CertInfo describes a certificate for people and JSON.
type CertInfo struct {
	Subject    string    `json:"subject"`
	Issuer     string    `json:"issuer"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	CertSHA256 string    `json:"cert_sha256"`
	SPKISHA256 string    `json:"spki_sha256"`
	IsCA       bool      `json:"is_ca,omitempty"`
	Usage      []string  `json:"ext_key_usage,omitempty"`
	DNSNames   []string  `json:"dns_names,omitempty"`
	IPs        []string  `json:"ip_addresses,omitempty"`
	URIs       []string  `json:"uris,omitempty"`
	Emails     []string  `json:"emails,omitempty"`
}

// Describe summarises a certificate.
func Describe(c *x509.Certificate) CertInfo {
	ci := CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		CertSHA256: CertSHA256(c), SPKISHA256: SPKISHA256(c), IsCA: c.IsCA,
		DNSNames: c.DNSNames, Emails: c.EmailAddresses,
	}
	for _, u := range c.ExtKeyUsage {
		ci.Usage = append(ci.Usage, u.String())
	}
	for _, ip := range c.IPAddresses {
		ci.IPs = append(ci.IPs, ip.String())
	}
	for _, u := range c.URIs {
		ci.URIs = append(ci.URIs, u.String())
	}
	return ci
}

// InspectInput names the files of one set of material.
type InspectInput struct {
	CertFile   string
	KeyFile    string
	IssuerFile string // optional: the CAs that issued CertFile
	RootsFile  string // optional: the CAs this process verifies its peer with
	Role       Role
	WarnWithin time.Duration
	// Skew tolerates clocks that differ a little (CheckOptions.Skew); pass
	// DefaultClockSkew to judge as a FileSource does by default.
	Skew time.Duration
	Now  time.Time
}

// Report is the result of Inspect.
type Report struct {
	Findings Findings   `json:"findings"`
	Leaf     *CertInfo  `json:"leaf,omitempty"`
	Issuers  []CertInfo `json:"issuers,omitempty"`
	Roots    []CertInfo `json:"roots,omitempty"`
}

// Clean reports whether no error-severity finding was made.
func (r *Report) Clean() bool { return !r.Findings.HasErrors() }

// ErrUnreadable wraps failures to read a file at all.
var ErrUnreadable = errors.New("cannot read file")

// Inspect reads a set of material files and checks them with CheckSet,
// plus one check of its own: a key file readable by group or others is an
// error finding (CodeKeyFileMode). A process loading material does not
// refuse a set over its file mode (material.FileSource does not look):
// that would turn a hygiene problem into an outage, so it is for people
// and pipelines to act on before a rollout. Inspect returns an error
// wrapping ErrUnreadable only when a file cannot be read at all; every
// problem with what was read is a finding.
func Inspect(in InspectInput) (*Report, error) {
	var p SetPEM
	for _, f := range []struct {
		path     string
		dst      *[]byte
		optional bool
	}{
		{in.CertFile, &p.Cert, false},
		{in.KeyFile, &p.Key, false},
		{in.IssuerFile, &p.Issuer, true},
		{in.RootsFile, &p.Roots, true},
	} {
		if f.optional && f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("pki: %w: %w", ErrUnreadable, err)
		}
		if b == nil {
			b = []byte{} // read but empty is not "not configured"
		}
		*f.dst = b
	}
	set, fs := CheckSet(p, CheckOptions{Role: in.Role, Now: in.Now, Skew: in.Skew, WarnWithin: in.WarnWithin})
	rep := &Report{Findings: fs.WithFiles(in.CertFile, in.KeyFile, in.RootsFile, in.IssuerFile)}
	if set.Leaf != nil {
		ci := Describe(set.Leaf)
		rep.Leaf = &ci
	}
	for _, c := range set.Issuers {
		rep.Issuers = append(rep.Issuers, Describe(c))
	}
	for _, c := range set.Roots {
		rep.Roots = append(rep.Roots, Describe(c))
	}
	if st, err := os.Stat(in.KeyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		rep.Findings = append(rep.Findings, Finding{
			Code: CodeKeyFileMode, Severity: SeverityError, What: "key", File: in.KeyFile,
			Message: fmt.Sprintf("private key file mode is %#o: readable by group or others; chmod 600 it", st.Mode().Perm()),
		})
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return rank(rep.Findings[i].Severity) < rank(rep.Findings[j].Severity)
	})
	return rep, nil
}

func rank(s Severity) int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

func usageFits(c *x509.Certificate, role Role) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true // no EKU extension: any usage, as crypto/x509 treats it
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageAny || u == role.extKeyUsage() {
			return true
		}
	}
	return false
}

func usageNames(c *x509.Certificate) string {
	var names []string
	for _, u := range c.ExtKeyUsage {
		names = append(names, u.String())
	}
	if len(names) == 0 {
		return "unrecognised"
	}
	return strings.Join(names, ", ")
}

func subjects(certs []*x509.Certificate) string {
	var s []string
	for _, c := range certs {
		s = append(s, fmt.Sprintf("%q", c.Subject.String()))
	}
	return strings.Join(s, ", ")
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// age formats a duration for people: days when long, else rounded.
func age(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.Round(time.Second).String()
}
