package material

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/natscert/natscert/pki"
)

// Source hands out the TLS material a process presents and trusts right now.
//
// Cert and RootCAs have the shape of nats.go's ClientTLSConfig callbacks and
// must be cheap: no file I/O, no contended lock. They return the last good,
// validated set.
type Source interface {
	// Cert returns the certificate (with chain and key) to present.
	Cert() (tls.Certificate, error)
	// RootCAs returns the CAs that verify the peer.
	RootCAs() (*x509.CertPool, error)
	// Snapshot describes what is loaded now; FileSource and StaticSource
	// return a copy the caller owns.
	Snapshot() Snapshot
	// Subscribe calls fn for every outcome of a load attempt until the
	// returned cancel is called. fn runs on the source's goroutine and must
	// not block for long.
	Subscribe(fn func(Event)) (cancel func())
	// Refresh re-reads the material now and returns when that attempt is
	// done. A rejected set is reported, not returned: the error is for a
	// context that ended or a closed source.
	Refresh(ctx context.Context) error
	// Close stops watching. Cert and RootCAs keep returning the last set.
	Close() error
}

// Set is one consistent view of a source's material: the certificate, the
// roots and their description, all from the same load. Reading Cert,
// RootCAs and Snapshot one after the other can pair the generation or roots
// of a new set with the certificate of the old one when a swap falls in
// between; a Set cannot.
type Set struct {
	// Cert is the certificate to present, with chain, key and Leaf; it has
	// no Certificate bytes when the source presents none. It is shared
	// with every caller, as what Cert returns is: do not modify it.
	Cert tls.Certificate
	// Roots verify the peer; nil means the system roots. Shared too.
	Roots *x509.CertPool
	// Snapshot describes Cert and Roots; it is the caller's copy.
	Snapshot Snapshot
}

// Currenter is a source that hands out its whole set in one read.
// FileSource and StaticSource are Currenters. It is not part of Source so
// that other implementations of Source keep compiling; use CurrentOf.
type Currenter interface {
	Current() Set
}

// CurrentOf returns the set src serves now. A Currenter answers in one
// read. Any other Source is read through Snapshot, Cert and RootCAs, and
// read again, a few times at most, while its Snapshot.Generation moved
// in between. The error is one Cert (other than ErrNoCertificate) or
// RootCAs returned, as is.
func CurrentOf(src Source) (Set, error) {
	if c, ok := src.(Currenter); ok {
		return c.Current(), nil
	}
	var set Set
	for range 3 {
		set.Snapshot = src.Snapshot()
		cert, err := src.Cert()
		if err != nil && !errors.Is(err, ErrNoCertificate) {
			return Set{}, err
		}
		roots, err := src.RootCAs()
		if err != nil {
			return Set{}, err
		}
		set.Cert, set.Roots = cert, roots
		if src.Snapshot().Generation == set.Snapshot.Generation {
			break
		}
	}
	return set, nil
}

// Snapshot describes the material a source serves.
type Snapshot struct {
	// Generation grows by one every time a new set is swapped in; callers
	// compare generations to know whether material changed.
	Generation uint64         `json:"generation"`
	Leaf       *pki.CertInfo  `json:"leaf,omitempty"`
	Roots      []pki.CertInfo `json:"roots,omitempty"`
	LoadedAt   time.Time      `json:"loaded_at"`
	CertFile   string         `json:"cert_file,omitempty"`
	KeyFile    string         `json:"key_file,omitempty"`
	RootsFile  string         `json:"roots_file,omitempty"`
	IssuerFile string         `json:"issuer_file,omitempty"`
}

// clone copies the leaf and roots descriptions with their lists, so that a
// caller changing its Snapshot changes nothing another caller sees. It is
// cheap next to a dial, the most often a Snapshot is taken.
func (s Snapshot) clone() Snapshot {
	if s.Leaf != nil {
		leaf := cloneInfo(*s.Leaf)
		s.Leaf = &leaf
	}
	if s.Roots != nil {
		roots := make([]pki.CertInfo, len(s.Roots))
		for i, r := range s.Roots {
			roots[i] = cloneInfo(r)
		}
		s.Roots = roots
	}
	return s
}

func cloneInfo(c pki.CertInfo) pki.CertInfo {
	c.Usage, c.DNSNames, c.IPs = slices.Clone(c.Usage), slices.Clone(c.DNSNames), slices.Clone(c.IPs)
	c.URIs, c.Emails = slices.Clone(c.URIs), slices.Clone(c.Emails)
	return c
}

// EventKind says how a load attempt ended.
type EventKind string

// Outcomes of a load attempt.
const (
	EventLoaded    EventKind = "loaded"    // a new set was validated and swapped in
	EventRejected  EventKind = "rejected"  // the files did not validate; the last good set stays
	EventUnchanged EventKind = "unchanged" // the files hold what is already loaded
)

// Event is one outcome of a load attempt.
type Event struct {
	Kind EventKind `json:"event"`
	Time time.Time `json:"time"`
	// Reason says why a set was rejected, or what triggered the load.
	Reason string `json:"reason,omitempty"`
	// Err is the rejection as an error (wrapping pki.ErrInvalid when the
	// material was read but is not valid).
	Err error `json:"-"`
	// Findings are the validation findings of the attempt.
	Findings pki.Findings `json:"findings,omitempty"`
	// Snapshot is what is served after the attempt, a copy shared by the
	// attempt's subscribers: read it, do not modify it.
	Snapshot Snapshot `json:"snapshot"`
}
