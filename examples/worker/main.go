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
//
// It logs with slog (text) to stderr and exits 0 on SIGTERM or SIGINT
// after draining.
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/bus"
)

// conn is what the worker needs of a connection, bus or plain.
type conn interface {
	Publish(subj string, data []byte) error
	Subscribe(subj string, h nats.MsgHandler) error
	QueueSubscribe(subj, queue string, h nats.MsgHandler) error
	Drain(ctx context.Context) error
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
	name := envOr("NATS_CLIENT_NAME", "")

	var handled atomic.Uint64
	if err := c.QueueSubscribe(prefix+".rpc", prefix, func(m *nats.Msg) {
		n := handled.Add(1)
		_ = m.Respond([]byte(fmt.Sprintf("%s %d %s", name, n, m.Data)))
	}); err != nil {
		return err
	}
	var fanned atomic.Uint64
	if err := c.Subscribe(prefix+".fanout", func(*nats.Msg) { fanned.Add(1) }); err != nil {
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
			return c.Drain(dctx)
		case <-tick:
			seq++
			if err := c.Publish(prefix+".fanout", []byte(fmt.Sprintf("%s %d", name, seq))); err != nil {
				logger.Warn("publish failed", "err", err)
			}
		}
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

// staticConn is today's code: material loaded once at start-up.
type staticConn struct{ *nats.Conn }

func (s staticConn) Subscribe(subj string, h nats.MsgHandler) error {
	_, err := s.Conn.Subscribe(subj, h)
	return err
}

func (s staticConn) QueueSubscribe(subj, queue string, h nats.MsgHandler) error {
	_, err := s.Conn.QueueSubscribe(subj, queue, h)
	return err
}

func (s staticConn) Drain(ctx context.Context) error {
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

func connectStatic(logger *slog.Logger) (conn, error) {
	url := envOr("NATS_URL", nats.DefaultURL)
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("disconnected from nats", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("reconnected to nats", "server", nc.ConnectedUrlRedacted())
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
	logger.Info("connected to nats", "server", nc.ConnectedUrlRedacted(), "static", true)
	return staticConn{nc}, nil
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
