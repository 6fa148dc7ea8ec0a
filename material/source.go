package material

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	// Snapshot describes what is loaded now.
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
	// Snapshot is what is served after the attempt.
	Snapshot Snapshot `json:"snapshot"`
}
