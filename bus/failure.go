package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// Sentinel errors callers branch on.
var (
	// ErrClosed is returned by a Conn that was closed. Where nats.go
	// returned nats.ErrConnectionClosed, the error wraps both.
	ErrClosed = errors.New("bus: connection closed")
	// ErrServerCertificate wraps a server certificate bus refused: not
	// issued by the roots in use, expired, or not valid for the name.
	ErrServerCertificate = errors.New("bus: server certificate not trusted")
	// ErrConfig wraps configuration that cannot work (environment
	// variables, options).
	ErrConfig = errors.New("bus: configuration")
)

// Reason classifies a failure. Metrics are labelled with it.
type Reason string

// Reasons.
const (
	// ReasonDial: no server reached (refused, unreachable, DNS).
	ReasonDial Reason = "dial"
	// ReasonTimeout: a dial, handshake or CONNECT timed out.
	ReasonTimeout Reason = "timeout"
	// ReasonServerCertificate: bus refused the server's certificate.
	ReasonServerCertificate Reason = "server_certificate"
	// ReasonRejected: the server refused the handshake after bus had
	// verified it, which means it refused our certificate (a TLS alert,
	// or with TLS 1.3 a broken pipe on CONNECT).
	ReasonRejected Reason = "rejected"
	// ReasonAuthorization: the server refused CONNECT.
	ReasonAuthorization Reason = "authorization"
	// ReasonTLS: another TLS failure.
	ReasonTLS Reason = "tls"
	// ReasonConnect: any other failure of an attempt.
	ReasonConnect Reason = "connect"
	// ReasonDisconnected: an established connection broke.
	ReasonDisconnected Reason = "disconnected"
	// ReasonMaterial: the source rejected new files; the last good
	// material stays in use.
	ReasonMaterial Reason = "material"
	// ReasonSwap: a swap could not complete; the old connection stays.
	ReasonSwap Reason = "swap"
	// ReasonSlowConsumer: a subscription dropped messages.
	ReasonSlowConsumer Reason = "slow_consumer"
	// ReasonServerError: an asynchronous error from the server or
	// nats.go (permissions, protocol).
	ReasonServerError Reason = "server_error"
)

var reasons = []Reason{
	ReasonDial, ReasonTimeout, ReasonServerCertificate, ReasonRejected, ReasonAuthorization,
	ReasonTLS, ReasonConnect, ReasonDisconnected, ReasonMaterial, ReasonSwap,
	ReasonSlowConsumer, ReasonServerError,
}

func reasonIndex(r Reason) int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return len(reasons) - 1
}

// refreshes says whether a failure may come from stale material, so that
// the source is re-read at once.
func (r Reason) refreshes() bool {
	switch r {
	case ReasonServerCertificate, ReasonRejected, ReasonAuthorization, ReasonTLS:
		return true
	}
	return false
}

// Failure is one failure, as handed to the failure handler.
type Failure struct {
	Time   time.Time `json:"time"`
	Reason Reason    `json:"reason"`
	// Attempt is true for a failed connection attempt.
	Attempt bool `json:"attempt"`
	// Server is the server URL or address concerned, when known.
	Server string `json:"server,omitempty"`
	// Presented is the sha256 of the certificate presented (cert_sha256).
	Presented string `json:"presented,omitempty"`
	// Generation is the material generation in use.
	Generation uint64 `json:"generation,omitempty"`
	// NextDelay is the backoff before the next attempt.
	NextDelay time.Duration `json:"next_delay,omitempty"`
	Err       error         `json:"-"`
	// Detail is Err as text; for a disconnect, led by its cause's reason
	// when known ("timeout: ...").
	Detail string `json:"detail,omitempty"`
}

// stage says how far an attempt got.
type stage int

const (
	stageNew stage = iota
	stageDialing
	stageDialFailed
	stageDialed
	stageServerRefused  // bus refused the server's certificate
	stageServerVerified // bus accepted the server; its answer is pending
)

// classify turns what bus saw of an attempt into a reason.
func classify(st stage, err error) Reason {
	if err != nil {
		if r, ok := classifyErr(err); ok {
			return r
		}
	}
	switch st {
	case stageDialing, stageDialFailed:
		return ReasonDial
	case stageServerRefused:
		return ReasonServerCertificate
	case stageServerVerified:
		// Our side of the handshake was done: the server refused it.
		if err == nil || isClosedErr(err) {
			return ReasonRejected
		}
	case stageDialed:
		if err == nil || isClosedErr(err) {
			return ReasonTLS
		}
	}
	return ReasonConnect
}

func classifyErr(err error) (Reason, bool) {
	var ve *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	var oe *net.OpError
	var ne net.Error
	// nats.go returns a server's -ERR to CONNECT as text only
	// ("nats: authorization violation", "nats: authentication timeout").
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, ErrServerCertificate), errors.As(err, &ve), errors.As(err, &ue),
		errors.As(err, &he), errors.As(err, &ie):
		return ReasonServerCertificate, true
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), strings.Contains(msg, "authorization violation"):
		return ReasonAuthorization, true
	case errors.As(err, &oe) && oe.Op == "remote error":
		// A TLS alert from the server, after bus had verified it.
		return ReasonRejected, true
	case errors.Is(err, nats.ErrTimeout), errors.As(err, &ne) && ne.Timeout(),
		strings.Contains(msg, "authentication timeout"):
		return ReasonTimeout, true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return ReasonDial, true
	case errors.Is(err, nats.ErrTLS) && isClosedErr(err):
		// nats.go: "connection closed by remote after TLS handshake".
		return ReasonRejected, true
	case errors.Is(err, nats.ErrTLS):
		return ReasonTLS, true
	}
	return "", false
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}

// classifyAsync classifies an error nats.go hands its ErrorHandler.
func classifyAsync(err error) Reason {
	switch {
	case errors.Is(err, nats.ErrSlowConsumer):
		return ReasonSlowConsumer
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return ReasonAuthorization
	}
	return ReasonServerError
}
