package bus

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestBackoffCeiling(t *testing.T) {
	for _, tc := range []struct {
		lo, hi time.Duration
		n      int
		want   time.Duration
	}{
		{500 * time.Millisecond, 40 * time.Second, 0, 500 * time.Millisecond},
		{500 * time.Millisecond, 40 * time.Second, 3, 4 * time.Second},
		{500 * time.Millisecond, 40 * time.Second, 7, 40 * time.Second},
		{500 * time.Millisecond, 40 * time.Second, 1 << 30, 40 * time.Second},
		{time.Nanosecond, math.MaxInt64, 1000, math.MaxInt64},
		{3 * time.Second, time.Second, 0, time.Second},
	} {
		if got := backoffCeiling(tc.lo, tc.hi, tc.n); got != tc.want {
			t.Errorf("backoffCeiling(%s, %s, %d) = %s, want %s", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}

func TestClassifyErr(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Reason
	}{
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, ReasonRejected},
		{fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, io.EOF), ReasonRejected},
		{fmt.Errorf("%w: %w", nats.ErrTLS, errors.New("handshake failure")), ReasonTLS},
		{errors.New("nats: authorization violation"), ReasonAuthorization},
		{errors.New("nats: authentication timeout"), ReasonTimeout},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, ReasonTimeout},
		{nats.ErrTimeout, ReasonTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ReasonDial},
		{fmt.Errorf("%w: %w", ErrServerCertificate, x509.UnknownAuthorityError{}), ReasonServerCertificate},
	} {
		if got, _ := classifyErr(tc.err); got != tc.want {
			t.Errorf("classifyErr(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if r, ok := classifyErr(errors.New("something else")); ok {
		t.Errorf("unknown error classified %q", r)
	}
}
