package rotation

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/natscert/natscert/pki"
)

// Outcome classifies what a server did with a probe.
type Outcome string

// Probe outcomes.
const (
	// Accepted: CONNECT and PING were answered with PONG.
	Accepted Outcome = "accepted"
	// RejectedHandshake: the server refused the client certificate with a
	// TLS alert, during the handshake or (TLS 1.3) on the first read.
	RejectedHandshake Outcome = "rejected_handshake"
	// ClosedAfterHandshake: the handshake completed and the server closed
	// the connection (EOF or reset) before sending a byte: pinned_certs,
	// or with TLS 1.3 a rejected certificate whose alert a reset beat.
	ClosedAfterHandshake Outcome = "closed_after_handshake"
	// TimedOut: no answer before the probe's timeout or the context's
	// end. A server that hangs has refused nothing.
	TimedOut Outcome = "timed_out"
	// ProtocolError: the server answered -ERR, something unexpected, or
	// closed the connection after answering.
	ProtocolError Outcome = "protocol_error"
	// Unreachable: no TCP connection, no INFO, or a server certificate
	// that did not verify.
	Unreachable Outcome = "unreachable"
)

// ProbeResult is what one probe observed.
type ProbeResult struct {
	Server  string    `json:"server"`
	URL     string    `json:"url"`
	At      time.Time `json:"at"`
	Outcome Outcome   `json:"outcome"`
	// Detail is the error or the server's answer, verbatim.
	Detail string `json:"detail,omitempty"`
	// ServerCertSHA256 is the certificate the server presented.
	ServerCertSHA256 string        `json:"server_cert_sha256,omitempty"`
	ServerNotAfter   time.Time     `json:"server_not_after,omitzero"`
	TLSVersion       string        `json:"tls_version,omitempty"`
	Took             time.Duration `json:"took"`

	serverCert *x509.Certificate // the names of a renewed server leaf come from it
}

// Probe dials a NATS server as a client would, with raw TLS, presenting
// its own certificate, and reads exactly what the server answers.
type Probe struct {
	// Cert is presented unconditionally, even when the server no longer
	// lists its issuer, so that a rejection is the server's.
	Cert tls.Certificate
	// Roots verify the server.
	Roots *x509.CertPool
	// User and Password go in CONNECT when set.
	User, Password string
	// Timeout bounds the whole exchange; default 5 s.
	Timeout time.Duration
}

// Run probes the server at rawURL (tls://host:port or nats://host:port).
func (p *Probe) Run(ctx context.Context, server, rawURL string) ProbeResult {
	start := time.Now()
	res := ProbeResult{Server: server, URL: rawURL, At: start}
	o, detail := p.run(ctx, rawURL, &res)
	res.Outcome, res.Detail, res.Took = o, detail, time.Since(start)
	return res
}

func (p *Probe) run(ctx context.Context, rawURL string, res *ProbeResult) (Outcome, string) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return Unreachable, fmt.Sprintf("bad url %q", rawURL)
	}
	host := u.Hostname()
	ctx, cancel := context.WithTimeout(ctx, or(p.Timeout, 5*time.Second))
	defer cancel()
	deadline, _ := ctx.Deadline()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return Unreachable, err.Error()
	}
	defer raw.Close()
	_ = raw.SetDeadline(deadline)
	// The server speaks first, in plaintext: INFO {...}\r\n.
	br := bufio.NewReader(raw)
	line, err := br.ReadString('\n')
	if err != nil {
		return Unreachable, "reading INFO: " + err.Error()
	}
	if !strings.HasPrefix(line, "INFO ") {
		return Unreachable, "expected INFO, got " + clip(line)
	}
	var info struct {
		TLSRequired bool `json:"tls_required"`
	}
	_ = json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info)
	cert := p.Cert
	cfg := &tls.Config{
		RootCAs:    p.Roots,
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		// Present the probe certificate whatever the server asks for, so
		// that the decision is the server's, not Go's client.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
	conn := tls.Client(raw, cfg)
	_ = conn.SetDeadline(deadline)
	if err := conn.HandshakeContext(ctx); err != nil {
		if timedOut(err) {
			return TimedOut, "handshake: " + err.Error()
		}
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return Unreachable, "server certificate: " + err.Error()
		}
		if isAlert(err) {
			return RejectedHandshake, err.Error()
		}
		return Unreachable, "handshake: " + err.Error()
	}
	st := conn.ConnectionState()
	res.TLSVersion = tls.VersionName(st.Version)
	if len(st.PeerCertificates) > 0 {
		res.ServerCertSHA256 = pki.CertSHA256(st.PeerCertificates[0])
		res.ServerNotAfter = st.PeerCertificates[0].NotAfter
		res.serverCert = st.PeerCertificates[0]
	}
	connect := map[string]any{
		"verbose": false, "pedantic": false, "tls_required": true,
		"name": "natscert-probe", "lang": "natscert", "version": "probe", "protocol": 1,
	}
	if p.User != "" {
		connect["user"], connect["pass"] = p.User, p.Password
	}
	cb, _ := json.Marshal(connect)
	if _, err := conn.Write([]byte("CONNECT " + string(cb) + "\r\nPING\r\n")); err != nil {
		return readFailed("writing CONNECT", err, false)
	}
	tr := bufio.NewReader(conn)
	answered := false // the server has sent a byte since the handshake
	for {
		line, err := tr.ReadString('\n')
		if err != nil {
			return readFailed("reading reply", err, answered || line != "")
		}
		answered = true
		line = strings.TrimSpace(line)
		switch {
		case line == "PONG":
			return Accepted, "PONG"
		case strings.HasPrefix(line, "-ERR"):
			return ProtocolError, line
		case strings.HasPrefix(line, "INFO "), line == "+OK", line == "PING":
			if line == "PING" {
				_, _ = conn.Write([]byte("PONG\r\n"))
			}
			continue
		default:
			return ProtocolError, "unexpected " + clip(line)
		}
	}
}

// readFailed classifies an error on the connection after the handshake.
// Only an alert, or a close before the server sent anything, can be the
// server refusing the certificate; a timeout never is.
func readFailed(what string, err error, answered bool) (Outcome, string) {
	switch {
	case timedOut(err):
		return TimedOut, what + ": " + err.Error()
	case isAlert(err):
		// TLS 1.3: the client's handshake ends before the server has
		// verified the client certificate; its verdict arrives as an
		// alert on the first read.
		return RejectedHandshake, err.Error()
	case answered:
		return ProtocolError, what + ": closed after the server answered: " + err.Error()
	case errors.Is(err, io.EOF), isReset(err):
		return ClosedAfterHandshake, "connection closed after the handshake: " + err.Error()
	}
	return ProtocolError, what + ": " + err.Error()
}

// timedOut reports whether err is a deadline or the context's end.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &ne) && ne.Timeout()
}

// isAlert reports whether err is a TLS alert from the peer.
func isAlert(err error) bool {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return true
	}
	// The client side reports the peer's alert as "remote error: tls: ...".
	return err != nil && strings.Contains(err.Error(), "remote error: tls:")
}

func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
