// Command worker is a small control-plane service on NATS, configured
// only from the environment: a request/reply responder in a queue group,
// a subscriber on a fan-out subject, and a periodic publisher.
//
// By default it connects through bus, so it picks up rotated certificates
// without a restart. With WORKER_STATIC=1 it behaves like today's
// start-up-loaded services (tls.LoadX509KeyPair once, nats.Secure,
// MaxReconnects(-1), ReconnectWait(2s)), for legacy-member tests.
//
// Environment:
//
//	NATS_URL, NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY, NATS_CLIENT_NAME, NATSCERT_*  see package bus
//	WORKER_STATIC=1            start-up-loaded TLS, as services do today
//	WORKER_NO_NAME=1           with WORKER_STATIC, set no connection name (legacy members)
//	WORKER_PREFIX=worker       subjects: <prefix>.rpc (queue group <prefix>), <prefix>.fanout
//	WORKER_PUBLISH_INTERVAL=1s how often to publish on <prefix>.fanout; 0 turns the publisher off
//	WORKER_LOG_LEVEL=info      debug, info, warn, error
//	WORKER_REPORT=path         at exit, write an accounting report (JSON) to path
//
// It logs with slog (text) to stderr and exits 0 on SIGTERM or SIGINT
// after draining.
//
// With WORKER_REPORT the worker keeps accounts for the drill (natscert
// drill --processes): it reads the 8-byte sequence number of every
// <prefix>.fanout message into a ledger, notes the id of every request it
// answers (a decimal payload), and after draining writes the received
// sequence numbers as ranges, the counts, the ids and its connection's
// Status (internal/workerreport). The drill then counts lost, duplicate
// and out-of-order messages exactly, as it does for in-process members.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/bus"
	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/internal/workerreport"
	"github.com/natscert/natscert/pki"
)

// conn is what the worker needs of a connection, bus or plain.
type conn interface {
	Publish(subj string, data []byte) error
	Subscribe(subj string, h nats.MsgHandler) error
	QueueSubscribe(subj, queue string, h nats.MsgHandler) error
	Drain(ctx context.Context) error
	Status() bus.Status
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level(os.Getenv("WORKER_LOG_LEVEL"))}))
	if err := run(logger); err != nil {
		logger.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	prefix := envOr("WORKER_PREFIX", "worker")
	interval, err := time.ParseDuration(envOr("WORKER_PUBLISH_INTERVAL", "1s"))
	if err != nil {
		return fmt.Errorf("WORKER_PUBLISH_INTERVAL: %w", err)
	}
	var c conn
	if os.Getenv("WORKER_STATIC") == "1" {
		c, err = connectStatic(logger)
	} else {
		c, err = connectBus(ctx, logger)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while connecting
		}
		return err
	}
	// The name the servers know this connection by (bus defaults it to the
	// host name), so replies and the report match the servers' view.
	name := c.Status().Name
	reportPath := os.Getenv("WORKER_REPORT")
	var acct *accounts
	if reportPath != "" {
		acct = &accounts{}
	}

	var handled atomic.Uint64
	if err := c.QueueSubscribe(prefix+".rpc", prefix, func(m *nats.Msg) {
		n := handled.Add(1)
		acct.answered(m.Data)
		_ = m.Respond([]byte(fmt.Sprintf("%s %d %s", name, n, m.Data)))
	}); err != nil {
		return err
	}
	var fanned atomic.Uint64
	if err := c.Subscribe(prefix+".fanout", func(m *nats.Msg) {
		fanned.Add(1)
		acct.fanout(m.Data)
	}); err != nil {
		return err
	}
	logger.Info("worker running", "prefix", prefix, "publish_interval", interval)

	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			logger.Info("worker stopping", "handled", handled.Load(), "fanout_received", fanned.Load(), "published", seq)
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := c.Drain(dctx)
			if acct != nil {
				// After the drain: what it delivered counts too.
				r := acct.report(name, handled.Load(), c.Status())
				if werr := workerreport.Write(reportPath, r); werr != nil {
					err = errors.Join(err, fmt.Errorf("WORKER_REPORT: %w", werr))
				}
			}
			return err
		case <-tick:
			seq++
			if err := c.Publish(prefix+".fanout", []byte(fmt.Sprintf("%s %d", name, seq))); err != nil {
				logger.Warn("publish failed", "err", err)
			}
		}
	}
}

// accounts is what the worker keeps for WORKER_REPORT. A nil *accounts
// keeps nothing, so the handlers need no mode switch.
type accounts struct {
	ledger     seqledger.Ledger
	unnumbered atomic.Int64
	mu         sync.Mutex
	ids        []uint64 // requests answered
}

func (a *accounts) fanout(data []byte) {
	if a == nil {
		return
	}
	if seq, ok := seqledger.Decode(data); ok {
		a.ledger.Record(seq)
	} else {
		a.unnumbered.Add(1)
	}
}

func (a *accounts) answered(data []byte) {
	if a == nil {
		return
	}
	if id, err := strconv.ParseUint(string(data), 10, 64); err == nil {
		a.mu.Lock()
		a.ids = append(a.ids, id)
		a.mu.Unlock()
	}
}

func (a *accounts) report(name string, handled uint64, st bus.Status) workerreport.Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	return workerreport.Report{
		Name: name, Fanout: a.ledger.Snapshot(), Unnumbered: a.unnumbered.Load(),
		Answered: append([]uint64{}, a.ids...), Handled: handled, Status: st,
	}
}

// busConn adapts *bus.Conn.
type busConn struct{ *bus.Conn }

func (b busConn) Subscribe(subj string, h nats.MsgHandler) error {
	_, err := b.Conn.Subscribe(subj, h)
	return err
}

func (b busConn) QueueSubscribe(subj, queue string, h nats.MsgHandler) error {
	_, err := b.Conn.QueueSubscribe(subj, queue, h)
	return err
}

func connectBus(ctx context.Context, logger *slog.Logger) (conn, error) {
	c, err := bus.ConnectFromEnv(ctx, bus.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	return busConn{c}, nil
}

// staticConn is today's code: material loaded once at start-up. For the
// report it counts what nats.go tells of its attempts.
type staticConn struct {
	*nats.Conn
	presented    *pki.CertInfo
	connects     atomic.Uint64
	dialFailures atomic.Uint64 // reconnect attempts that found no server
}

func (s *staticConn) Subscribe(subj string, h nats.MsgHandler) error {
	_, err := s.Conn.Subscribe(subj, h)
	return err
}

func (s *staticConn) QueueSubscribe(subj, queue string, h nats.MsgHandler) error {
	_, err := s.Conn.QueueSubscribe(subj, queue, h)
	return err
}

func (s *staticConn) Drain(ctx context.Context) error {
	closed := make(chan struct{})
	s.Conn.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := s.Conn.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		s.Conn.Close()
		return ctx.Err()
	}
}

// Status is the part of bus's Status nats.go can tell. nats.go counts a
// reconnect attempt once it has a TCP connection (Stats().Reconnects) and
// hands a failed dial to ReconnectErrHandler, but gives no reason when a
// handshake or CONNECT fails after that: those count under ReasonConnect.
func (s *staticConn) Status() bus.Status {
	st := bus.Status{
		Name: s.Opts.Name, Connected: s.IsConnected(), Strategy: "static", Presented: s.presented,
		Connects: s.connects.Load(), Attempts: 1 + s.Stats().Reconnects + s.dialFailures.Load(),
	}
	if st.Connected {
		st.Server, st.ServerID, st.ServerName = s.ConnectedUrlRedacted(), s.ConnectedServerId(), s.ConnectedServerName()
	}
	st.Reconnects = st.Connects - 1
	st.FailedAttempts = st.Attempts - st.Connects
	st.Failures = map[bus.Reason]uint64{}
	if n := s.dialFailures.Load(); n > 0 {
		st.Failures[bus.ReasonDial] = n
	}
	if n := st.FailedAttempts - s.dialFailures.Load(); n > 0 {
		st.Failures[bus.ReasonConnect] = n
	}
	return st
}

func connectStatic(logger *slog.Logger) (conn, error) {
	url := envOr("NATS_URL", nats.DefaultURL)
	s := &staticConn{}
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("disconnected from nats", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.connects.Add(1)
			logger.Info("reconnected to nats", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			s.dialFailures.Add(1)
			logger.Warn("nats reconnect failed", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Warn("nats error", "err", err)
		}),
	}
	if name := os.Getenv("NATS_CLIENT_NAME"); name != "" && os.Getenv("WORKER_NO_NAME") != "1" {
		opts = append(opts, nats.Name(name))
	}
	if certFile, keyFile := os.Getenv("NATS_TLS_CERT"), os.Getenv("NATS_TLS_KEY"); certFile != "" || keyFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
		// Leaf is nil under GODEBUG=x509keypairleaf=0: parse it then.
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, err
			}
		}
		info := pki.Describe(leaf)
		s.presented = &info
		if caFile := os.Getenv("NATS_TLS_CA"); caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("NATS_TLS_CA: no certificates")
			}
		}
		opts = append(opts, nats.Secure(cfg))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	s.Conn = nc
	s.connects.Add(1)
	logger.Info("connected to nats", "server", nc.ConnectedUrlRedacted(), "static", true)
	return s, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func level(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		if n, err := strconv.Atoi(s); err == nil {
			return slog.Level(n)
		}
		return slog.LevelInfo
	}
	return l
}
