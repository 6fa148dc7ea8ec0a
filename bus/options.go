package bus

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/material"
)

// Strategy says what a connection does when its source loads new material
// while it is connected. Whatever the strategy, a connection that is not
// connected when new material lands retries at once with it instead of
// waiting out its backoff.
type Strategy string

// Strategies.
const (
	// StrategyNone uses new material on the next natural reconnect only.
	StrategyNone Strategy = "none"
	// StrategyReconnect calls ForceReconnect after a random delay inside
	// the spread window. Messages of a core NATS stream published during
	// the gap are not delivered to this connection, and requests in
	// flight may fail.
	StrategyReconnect Strategy = "reconnect"
	// StrategySwap dials a second connection with the new material to the
	// same server, re-creates every subscription made through bus on it,
	// waits a grace period, moves publishing and requests to it and drains
	// the old connection: make-before-break, no message lost.
	StrategySwap Strategy = "swap"
)

// ParseStrategy parses "none", "reconnect" or "swap".
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(strings.ToLower(strings.TrimSpace(s))); st {
	case StrategyNone, StrategyReconnect, StrategySwap:
		return st, nil
	}
	return "", fmt.Errorf("bus: unknown strategy %q (want none, reconnect or swap)", s)
}

// Defaults.
const (
	DefaultStrategy = StrategyReconnect
	// DefaultSpread is the window a reconnect or swap is delayed by, at
	// random, after new material is loaded, so that a fleet that sees new
	// files at once does not hit the servers at once.
	DefaultSpread = time.Second
	// DefaultBackoffMin is the first ceiling of the reconnect backoff.
	DefaultBackoffMin = 500 * time.Millisecond
	// DefaultBackoffMax caps the backoff after failed handshakes: with
	// full jitter a rejected client tries on average every 20 s, three
	// times a minute whatever the number of servers.
	DefaultBackoffMax = 40 * time.Second
	// DialBackoffMax caps the backoff after attempts that reached no
	// server (refused, unreachable): they cost the servers nothing, and
	// a restarted server should see its clients back soon.
	DialBackoffMax = 5 * time.Second
	// DefaultGrace is the overlap of a swap on the same server.
	DefaultGrace = 50 * time.Millisecond
	// DefaultCrossServerGrace is the overlap of a swap that could not get
	// the same server: another server's fan-out can lag.
	DefaultCrossServerGrace = 200 * time.Millisecond
	// DefaultDialTimeout bounds one TCP dial and, in nats.go, one
	// handshake and CONNECT.
	DefaultDialTimeout = 2 * time.Second
	// DefaultDrainTimeout bounds how long a swap waits for the old
	// connection's requests and pending messages.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultSwapConcurrency is how many swaps of one process dial at once
	// when a burst of swaps starts, with the process-wide adaptive limiter
	// used when no WithSwapLimiter is given.
	DefaultSwapConcurrency = 64
	// DefaultSwapDialTarget is the dial time an adaptive swap limiter
	// stays under: a quarter of nats-server's default TLS handshake
	// timeout (2 s), past which dials fail and fall into backoff.
	DefaultSwapDialTarget = 500 * time.Millisecond
)

// Option configures a Conn.
type Option func(*config)

type config struct {
	src          material.Source
	ownSource    bool
	strategy     Strategy
	spread       time.Duration
	name         string
	logger       *slog.Logger
	metrics      *Metrics
	onFailure    func(Failure)
	onSwap       func(SwapReport)
	backoffMin   time.Duration
	backoffMax   time.Duration
	grace        time.Duration
	crossGrace   time.Duration
	limiter      *SwapLimiter
	serverName   string
	natsOpts     []nats.Option
	dialTimeout  time.Duration
	drainTimeout time.Duration
}

func defaultConfig() config {
	return config{
		strategy:     DefaultStrategy,
		spread:       DefaultSpread,
		logger:       slog.Default(),
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
		grace:        DefaultGrace,
		crossGrace:   DefaultCrossServerGrace,
		dialTimeout:  DefaultDialTimeout,
		drainTimeout: DefaultDrainTimeout,
	}
}

// WithSource sets where TLS material comes from, and turns TLS on for
// nats:// URLs too. The caller keeps owning src: Close does not close it.
// Without a source, a tls:// connection presents no certificate and
// verifies the server with the system roots.
func WithSource(src material.Source) Option {
	return func(c *config) { c.src, c.ownSource = src, false }
}

// WithStrategy sets what happens when new material is loaded (default
// StrategyReconnect).
func WithStrategy(s Strategy) Option {
	return func(c *config) { c.strategy = s }
}

// WithSpread sets the window a reconnect or swap is delayed by at random
// after new material is loaded (default one second). Zero acts at once.
// The servers pay for the handshakes: a 2-core server completes some 700
// mTLS handshakes a second (measured, bench), so a window of about N/700
// seconds for N clients of one such server keeps them from queueing;
// shorter windows make handshakes wait and, past the server's TLS
// timeout, fail and back off.
func WithSpread(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.spread = d
		}
	}
}

// WithName sets the connection name servers list in connz (default
// NATS_CLIENT_NAME's value with ConnectFromEnv, else the host name). A
// rotation recognises members by it.
func WithName(name string) Option {
	return func(c *config) { c.name = name }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithMetrics reports the connection to m under the label
// connection=<name>. Names must be unique among m's open connections.
func WithMetrics(m *Metrics) Option {
	return func(c *config) { c.metrics = m }
}

// WithFailureHandler calls fn for every failure: every failed connection
// attempt (including those nats.go reports through no callback), every
// unexpected disconnect, every rejected material load, every failed swap
// and every asynchronous server error. fn runs on the connection's own
// goroutine and must not block for long; it may call Close or Drain.
func WithFailureHandler(fn func(Failure)) Option {
	return func(c *config) { c.onFailure = fn }
}

// WithSwapHandler calls fn after every swap, completed or failed, with
// its timings, so that duplicates seen by the application can be
// attributed to an overlap window. fn runs on the connection's own
// goroutine, as WithFailureHandler's.
func WithSwapHandler(fn func(SwapReport)) Option {
	return func(c *config) { c.onSwap = fn }
}

// WithBackoff sets the reconnect backoff: before attempt n (counted per
// attempt, every server alike, reset by a good connection) bus waits a
// random time in [0, min(max, min·2ⁿ)) — full jitter. Defaults 500 ms and
// 40 s. Attempts that reached no server are capped at DialBackoffMax.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) {
		if min > 0 {
			c.backoffMin = min
		}
		if max > 0 {
			c.backoffMax = max
		}
		if c.backoffMax < c.backoffMin {
			c.backoffMax = c.backoffMin
		}
	}
}

// WithGrace sets how long a swap keeps both connections subscribed once
// the old connection's server was seen to know the new subscriptions, as
// margin for messages routed before and for publishers on other servers:
// same on the same server (default 50 ms), cross when it had to use
// another server (default 200 ms).
func WithGrace(same, cross time.Duration) Option {
	return func(c *config) {
		if same >= 0 {
			c.grace = same
		}
		if cross >= 0 {
			c.crossGrace = cross
		}
	}
}

// WithSwapLimiter shares l among connections: at most l's window of them
// dial for a swap at once. Without it, a process-wide adaptive limiter
// (NewAdaptiveSwapLimiter(DefaultSwapConcurrency, DefaultSwapDialTarget))
// is used.
func WithSwapLimiter(l *SwapLimiter) Option {
	return func(c *config) { c.limiter = l }
}

// WithServerName verifies every server's certificate against name instead
// of the host of the URL dialed. Without it, a server learned from the
// cluster by IP is verified against the host names of the URLs given.
func WithServerName(name string) Option {
	return func(c *config) { c.serverName = name }
}

// WithNATSOptions adds nats.go options (credentials, buffer sizes, ...).
// bus sets its own reconnect, TLS, dialer and callback options after
// them; those given here are overridden.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, opts...) }
}

// WithDialTimeout bounds one dial and, in nats.go, one handshake (default
// 2 s).
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.dialTimeout = d
		}
	}
}

// WithDrainTimeout bounds how long a swap waits for the old connection's
// requests and pending messages before closing it (default 30 s).
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.drainTimeout = d
		}
	}
}
