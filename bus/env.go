package bus

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/natscert/natscert/material"
)

// Environment variables ConnectFromEnv reads. The NATS_ ones are those
// services already use, with the same meaning.
const (
	EnvURL        = "NATS_URL"         // server URL(s), comma-separated; default nats://127.0.0.1:4222
	EnvCA         = "NATS_TLS_CA"      // PEM roots that verify the server
	EnvCert       = "NATS_TLS_CERT"    // PEM client certificate (chain)
	EnvKey        = "NATS_TLS_KEY"     // PEM private key of NATS_TLS_CERT
	EnvClientName = "NATS_CLIENT_NAME" // connection name; default the host name

	EnvStrategy     = "NATSCERT_STRATEGY"           // none | reconnect | swap; default reconnect
	EnvSpread       = "NATSCERT_SPREAD"             // random delay window after new material; default 1s
	EnvGrace        = "NATSCERT_GRACE"              // swap overlap on the same server; default 50ms
	EnvCrossGrace   = "NATSCERT_CROSS_SERVER_GRACE" // swap overlap across servers; default 200ms
	EnvBackoffMin   = "NATSCERT_BACKOFF_MIN"        // first backoff ceiling; default 500ms
	EnvBackoffMax   = "NATSCERT_BACKOFF_MAX"        // backoff cap; default 40s
	EnvIssuer       = "NATSCERT_TLS_ISSUER"         // PEM CA bundle NATS_TLS_CERT must chain to before it is used
	EnvServerName   = "NATSCERT_TLS_SERVER_NAME"    // verify servers against this name
	EnvRecheck      = "NATSCERT_RECHECK"            // re-read the files this often even without events; default 1m
	EnvWaitForFiles = "NATSCERT_WAIT_FOR_FILES"     // 1: wait for the files at start instead of failing
)

// Env is a configuration read from environment variables.
type Env struct {
	URL          string
	CA           string
	Cert         string
	Key          string
	Issuer       string
	Name         string
	ServerName   string
	Strategy     Strategy
	Spread       time.Duration
	Grace        time.Duration
	CrossGrace   time.Duration
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	Recheck      time.Duration
	WaitForFiles bool
}

// ReadEnv reads and checks the variables through getenv (os.Getenv, or a
// map lookup in tests). Errors wrap ErrConfig.
func ReadEnv(getenv func(string) string) (Env, error) {
	e := Env{
		URL: strings.TrimSpace(getenv(EnvURL)), CA: getenv(EnvCA), Cert: getenv(EnvCert), Key: getenv(EnvKey),
		Issuer: getenv(EnvIssuer), Name: getenv(EnvClientName), ServerName: getenv(EnvServerName),
		Strategy: DefaultStrategy, Spread: DefaultSpread, Grace: DefaultGrace, CrossGrace: DefaultCrossServerGrace,
		BackoffMin: DefaultBackoffMin, BackoffMax: DefaultBackoffMax, Recheck: material.DefaultRecheckInterval,
	}
	if e.URL == "" {
		e.URL = "nats://127.0.0.1:4222"
	}
	if (e.Cert == "") != (e.Key == "") {
		return e, fmt.Errorf("%w: %s and %s must be set together (%s=%q, %s=%q)",
			ErrConfig, EnvCert, EnvKey, EnvCert, e.Cert, EnvKey, e.Key)
	}
	if e.Issuer != "" && e.Cert == "" {
		return e, fmt.Errorf("%w: %s needs %s", ErrConfig, EnvIssuer, EnvCert)
	}
	if s := getenv(EnvStrategy); s != "" {
		st, err := ParseStrategy(s)
		if err != nil {
			return e, fmt.Errorf("%w: %s: %w", ErrConfig, EnvStrategy, err)
		}
		e.Strategy = st
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{EnvSpread, &e.Spread}, {EnvGrace, &e.Grace}, {EnvCrossGrace, &e.CrossGrace},
		{EnvBackoffMin, &e.BackoffMin}, {EnvBackoffMax, &e.BackoffMax}, {EnvRecheck, &e.Recheck},
	} {
		s := strings.TrimSpace(getenv(d.name))
		if s == "" {
			continue
		}
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return e, fmt.Errorf("%w: %s=%q: want a duration such as 500ms or 2s", ErrConfig, d.name, s)
		}
		*d.dst = v
	}
	if s := strings.TrimSpace(getenv(EnvWaitForFiles)); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return e, fmt.Errorf("%w: %s=%q: want 1 or 0", ErrConfig, EnvWaitForFiles, s)
		}
		e.WaitForFiles = b
	}
	if e.BackoffMax < e.BackoffMin {
		return e, fmt.Errorf("%w: %s (%s) is below %s (%s)", ErrConfig, EnvBackoffMax, e.BackoffMax, EnvBackoffMin, e.BackoffMin)
	}
	return e, nil
}

// Options turns e into options, without a source.
func (e Env) Options() []Option {
	opts := []Option{
		WithStrategy(e.Strategy), WithSpread(e.Spread), WithGrace(e.Grace, e.CrossGrace),
		WithBackoff(e.BackoffMin, e.BackoffMax),
	}
	if e.Name != "" {
		opts = append(opts, WithName(e.Name))
	}
	if e.ServerName != "" {
		opts = append(opts, WithServerName(e.ServerName))
	}
	return opts
}

// Connect connects as e says. When NATS_TLS_CA or NATS_TLS_CERT is set,
// it uses TLS, whatever the URL's scheme (services connect to nats://
// URLs with nats.Secure today), with a material.FileSource over
// NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY that the Conn owns and
// closes. opts are applied after e's, so they win.
func (e Env) Connect(ctx context.Context, opts ...Option) (*Conn, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	all := e.Options()
	if (e.CA != "" || e.Cert != "") && cfg.src == nil {
		fopts := []material.FileOption{material.WithLogger(cfg.logger), material.WithRecheckInterval(e.Recheck)}
		if e.WaitForFiles {
			fopts = append(fopts, material.WithWaitForFiles())
		}
		src, err := material.NewFileSource(ctx, material.Files{Cert: e.Cert, Key: e.Key, Roots: e.CA, Issuer: e.Issuer}, fopts...)
		if err != nil {
			return nil, fmt.Errorf("bus: TLS material from %s, %s, %s: %w", EnvCert, EnvKey, EnvCA, err)
		}
		all = append(all, func(c *config) { c.src, c.ownSource = src, true })
		c, err := Connect(ctx, e.URL, append(all, opts...)...)
		if err != nil {
			_ = src.Close()
			return nil, err
		}
		return c, nil
	}
	return Connect(ctx, e.URL, append(all, opts...)...)
}

// ConnectFromEnv reads the environment (see the Env* constants) and
// connects; opts override what the environment says.
func ConnectFromEnv(ctx context.Context, opts ...Option) (*Conn, error) {
	e, err := ReadEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return e.Connect(ctx, opts...)
}
