package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/material"
)

// Conn is a NATS connection that picks up new TLS material without a
// restart, backs off without storming, and never gives up.
//
// Publish, Subscribe, QueueSubscribe, Request and Flush go through the
// nats.Conn in use; with StrategySwap that connection is replaced during a
// rotation, and subscriptions made through Conn move with it. Conn is safe
// for concurrent use.
type Conn struct {
	cfg     config
	name    string
	urls    []string
	secure  bool
	hasCert bool
	src     material.Source
	names   serverNames
	logger  *slog.Logger

	active atomic.Pointer[link]
	// pubMu orders one publisher's messages across a swap: Publish holds
	// it for reading from loading the link to handing it the message; a
	// swap holds it to flush the old connection and switch, so that no
	// message reaches the old connection after its flush.
	pubMu sync.RWMutex

	mu     sync.Mutex // guards subs, links, closed
	subs   map[*Subscription]struct{}
	links  []*link
	closed bool

	qmu   sync.Mutex
	queue []any
	wake  chan struct{}

	ctx     context.Context // ends on Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // goroutines of goOwned
	runDone chan struct{}  // closed when run returns
	srcStop func()
	// inHandler is set while run calls a failure or swap handler: Close
	// called from one cannot wait for run, its caller.
	inHandler atomic.Bool

	stats       counters
	linkSeq     atomic.Uint64
	lastFailure atomic.Pointer[Failure]
	lastSwap    atomic.Pointer[SwapReport]
	swapping    atomic.Bool
	lastRefresh time.Time // owned by run
	swapFails   int       // owned by run
}

type counters struct {
	attempts, failedAttempts     atomic.Uint64
	connects, reconnects         atomic.Uint64
	disconnects                  atomic.Uint64
	swaps, crossSwaps, swapFails atomic.Uint64
	overlap                      atomic.Uint64
	loaded, rejected             atomic.Uint64
	failures                     [16]atomic.Uint64 // by reasonIndex
}

// events handled by Conn.run.
type (
	upEvent struct {
		l                         *link
		reconnected               bool
		url, serverID, serverName string
	}
	downEvent struct {
		l      *link
		err    error
		forced bool
		est    *attempt
	}
	materialEvent struct{ ev material.Event }
	actEvent      struct{ after time.Duration }
	swapDone      struct {
		rep SwapReport
		err error
	}
)

// Connect connects to url (one URL or a comma-separated list) and keeps
// the connection up until Close. TLS is used for tls:// URLs and, as
// nats.Secure does for nats:// ones, whenever WithSource gives material;
// the material is WithSource's. Connect waits for the first connection, retrying
// with backoff, until ctx ends; ctx does not bound the connection after
// that.
func Connect(ctx context.Context, url string, opts ...Option) (*Conn, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	c, err := newConn(url, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func newConn(rawURLs string, cfg config) (*Conn, error) {
	if _, err := ParseStrategy(string(cfg.strategy)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var urls []string
	secure := cfg.src != nil
	for _, u := range strings.Split(rawURLs, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("%w: server URL %q: %w", ErrConfig, u, err)
		}
		switch pu.Scheme {
		case "tls":
			secure = true
		case "nats":
		default:
			return nil, fmt.Errorf("%w: server URL %q: scheme must be nats:// or tls://", ErrConfig, u)
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no server URL", ErrConfig)
	}
	if cfg.name == "" {
		cfg.name, _ = os.Hostname()
	}
	c := &Conn{
		cfg: cfg, name: cfg.name, urls: urls, secure: secure, src: cfg.src,
		names:  newServerNames(urls, cfg.serverName),
		logger: cfg.logger.With("conn", cfg.name),
		subs:   map[*Subscription]struct{}{},
		wake:   make(chan struct{}, 1),
	}
	if c.cfg.limiter == nil {
		c.cfg.limiter = defaultLimiter
	}
	if secure {
		if c.src == nil {
			c.src = material.NewStaticSource(tls.Certificate{}, nil)
		}
		_, err := c.src.Cert()
		switch {
		case err == nil:
			c.hasCert = true
		case !errors.Is(err, material.ErrNoCertificate):
			return nil, fmt.Errorf("bus: certificate: %w", err)
		}
	}
	return c, nil
}

func (c *Conn) start(ctx context.Context) error {
	if c.cfg.metrics != nil {
		if err := c.cfg.metrics.add(c); err != nil {
			return err
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.secure {
		c.srcStop = c.src.Subscribe(func(ev material.Event) { c.enqueue(materialEvent{ev}) })
	}
	c.runDone = make(chan struct{})
	go c.run()
	l := c.newLink()
	urls := append([]string(nil), c.urls...)
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	if err := l.connect(ctx, urls, true); err != nil {
		c.shutdown()
		return fmt.Errorf("bus: connect %s: %w", strings.Join(c.urls, ","), err)
	}
	c.mu.Lock()
	c.links = []*link{l}
	c.mu.Unlock()
	c.active.Store(l)
	return nil
}

// goOwned runs fn on a goroutine the Conn waits for on Close.
func (c *Conn) goOwned(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

// enqueue hands an event to run. It never blocks: callers include
// nats.go's connecting goroutine.
func (c *Conn) enqueue(ev any) {
	c.qmu.Lock()
	c.queue = append(c.queue, ev)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run is the Conn's goroutine: it reports, logs, counts and acts on
// events until Close.
func (c *Conn) run() {
	defer close(c.runDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var due time.Time // when the pending strategy action runs; zero: none
	schedule := func(after time.Duration) {
		at := time.Now().Add(after)
		if due.IsZero() || at.Before(due) {
			due = at
			timer.Reset(after)
		}
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
			due = time.Time{}
			c.act()
		case <-c.wake:
			c.qmu.Lock()
			q := c.queue
			c.queue = nil
			c.qmu.Unlock()
			for _, ev := range q {
				if c.ctx.Err() != nil {
					return // closed, maybe by a handler of an earlier event
				}
				switch ev := ev.(type) {
				case Failure:
					c.fail(ev)
				case upEvent:
					c.onUp(ev, schedule)
				case downEvent:
					c.onDown(ev)
				case materialEvent:
					c.onMaterial(ev.ev, schedule)
				case actEvent:
					schedule(ev.after)
				case swapDone:
					c.onSwapDone(ev, schedule)
				}
			}
		}
	}
}

// fail surfaces a failure: count, log, handler, and for failures that
// may come from stale material, an immediate re-read of the source. It is
// counted here, once its reason is final, so that counts never go down.
func (c *Conn) fail(f Failure) {
	c.stats.failures[reasonIndex(f.Reason)].Add(1)
	if f.Err != nil && f.Detail == "" {
		f.Detail = f.Err.Error()
	} else if f.Err != nil {
		f.Detail = f.Detail + ": " + f.Err.Error()
	}
	c.lastFailure.Store(&f)
	attrs := []any{"reason", string(f.Reason), "server", f.Server, "err", f.Detail}
	if f.Presented != "" {
		attrs = append(attrs, "cert_sha256", f.Presented, "generation", f.Generation)
	}
	switch {
	case f.Attempt:
		c.logger.Warn("nats connection attempt failed", append(attrs, "next_delay", f.NextDelay)...)
	case f.Reason == ReasonMaterial:
		c.logger.Warn("nats material rejected; keeping the last good set", attrs...)
	case f.Reason != ReasonDisconnected:
		c.logger.Warn("nats error", attrs...)
	}
	handle(c, c.cfg.onFailure, f)
	if f.Attempt && f.Reason.refreshes() && c.secure && time.Since(c.lastRefresh) > 200*time.Millisecond {
		c.lastRefresh = time.Now()
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		err := c.src.Refresh(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			c.logger.Debug("nats material refresh", "err", err)
		}
		// A changed set arrives as a loaded event, which retries at once.
	}
}

func (c *Conn) onUp(ev upEvent, schedule func(time.Duration)) {
	est := ev.l.established()
	attrs := []any{"server", ev.url, "server_id", ev.serverID, "server_name", ev.serverName}
	if est != nil {
		if est.presented != nil {
			attrs = append(attrs, "cert_sha256", est.presented.CertSHA256, "not_after", est.presented.NotAfter)
		}
		attrs = append(attrs, "generation", est.gen, "roots", rootsFingerprints(est.roots))
	}
	if ev.l != c.active.Load() && c.active.Load() != nil {
		c.logger.Debug("nats swap connection up", attrs...)
		return
	}
	if ev.reconnected {
		c.logger.Info("reconnected to nats", attrs...)
	} else {
		c.logger.Info("connected to nats", attrs...)
	}
	// Material may have changed while connecting.
	if c.secure && c.cfg.strategy != StrategyNone && est != nil && c.stale(est) {
		schedule(c.spread())
	}
}

func (c *Conn) onDown(ev downEvent) {
	if ev.l != c.active.Load() {
		return
	}
	attrs := []any{}
	if est := ev.est; est != nil {
		attrs = append(attrs, "server", est.url, "server_id", est.serverID)
		if est.presented != nil {
			attrs = append(attrs, "cert_sha256", est.presented.CertSHA256)
		}
	}
	if ev.forced {
		c.logger.Info("disconnected from nats", append(attrs, "reason", "new material")...)
		return
	}
	// The Reason stays ReasonDisconnected, the metric's label for a lost
	// connection; the cause, when known, leads the Detail.
	f := Failure{Time: time.Now(), Reason: ReasonDisconnected, Err: ev.err}
	reason := ReasonDisconnected
	if ev.err != nil {
		f.Detail = ev.err.Error()
		if r, ok := classifyErr(ev.err); ok {
			reason = r
			f.Detail = string(r) + ": " + f.Detail
		}
		attrs = append(attrs, "err", ev.err.Error())
	}
	c.logger.Warn("disconnected from nats", append(attrs, "reason", string(reason))...)
	if ev.est != nil {
		f.Server, f.Generation = ev.est.url, ev.est.gen
		if ev.est.presented != nil {
			f.Presented = ev.est.presented.CertSHA256
		}
	}
	c.stats.failures[reasonIndex(ReasonDisconnected)].Add(1)
	c.lastFailure.Store(&f)
	handle(c, c.cfg.onFailure, f)
}

func (c *Conn) onMaterial(ev material.Event, schedule func(time.Duration)) {
	switch ev.Kind {
	case material.EventRejected:
		c.stats.rejected.Add(1)
		f := Failure{Time: ev.Time, Reason: ReasonMaterial, Err: ev.Err, Generation: ev.Snapshot.Generation}
		if ev.Err == nil {
			f.Detail = ev.Reason
		}
		if ev.Snapshot.Leaf != nil {
			f.Presented = ev.Snapshot.Leaf.CertSHA256
		}
		c.fail(f)
		return
	case material.EventLoaded:
	default:
		return
	}
	c.stats.loaded.Add(1)
	snap := ev.Snapshot
	attrs := []any{"generation", snap.Generation, "roots", rootsFingerprints(snap.Roots), "trigger", ev.Reason}
	if snap.Leaf != nil {
		attrs = append(attrs, "cert_sha256", snap.Leaf.CertSHA256, "not_after", snap.Leaf.NotAfter, "subject", snap.Leaf.Subject)
	}
	c.logger.Info("nats material loaded", attrs...)
	l := c.active.Load()
	if l == nil {
		return // still connecting: the next attempt reads the new set
	}
	nc := l.conn()
	if nc == nil || !nc.IsConnected() {
		// Failing or waiting: retry now with the new set.
		l.force("new material while not connected")
		return
	}
	if c.cfg.strategy == StrategyNone {
		return
	}
	if est := l.established(); est != nil && !c.stale(est) {
		return // same leaf: new roots matter at the next handshake only
	}
	schedule(c.spread())
}

// stale says whether the connection presents another leaf than the
// source serves now.
func (c *Conn) stale(est *attempt) bool {
	snap := c.src.Snapshot()
	if est.presented == nil || snap.Leaf == nil {
		return est.gen < snap.Generation && (est.presented != nil) != (snap.Leaf != nil)
	}
	return est.presented.CertSHA256 != snap.Leaf.CertSHA256
}

func (c *Conn) spread() time.Duration {
	if c.cfg.spread <= 0 {
		return 0
	}
	return rand.N(c.cfg.spread)
}

// act runs the strategy once the spread delay has passed.
func (c *Conn) act() {
	l := c.active.Load()
	if l == nil {
		return
	}
	est := l.established()
	if est == nil || !c.stale(est) {
		return
	}
	switch c.cfg.strategy {
	case StrategyReconnect:
		l.force("new material")
	case StrategySwap:
		// A swap under way is not started again: onSwapDone looks at the
		// material once it is over.
		if c.swapping.CompareAndSwap(false, true) {
			c.goOwned(func() {
				rep, err := c.swap(c.ctx, l)
				c.swapping.Store(false)
				c.enqueue(swapDone{rep: rep, err: err})
			})
		}
	}
}

// handle calls a failure or swap handler on run.
func handle[T any](c *Conn, fn func(T), v T) {
	if fn == nil {
		return
	}
	c.inHandler.Store(true)
	defer c.inHandler.Store(false)
	fn(v)
}

// Current returns the nats.Conn in use now, for anything bus does not
// wrap. With StrategySwap a later rotation replaces it: do not keep it,
// and subscribe through Conn so that subscriptions move.
func (c *Conn) Current() *nats.Conn {
	if l := c.active.Load(); l != nil {
		return l.conn()
	}
	return nil
}

// Name is the connection name servers see.
func (c *Conn) Name() string { return c.name }

// Publish publishes data on subj through the connection in use.
func (c *Conn) Publish(subj string, data []byte) error {
	c.pubMu.RLock()
	err := c.active.Load().conn().Publish(subj, data)
	c.pubMu.RUnlock()
	return closedErr(err)
}

// PublishMsg publishes m through the connection in use.
func (c *Conn) PublishMsg(m *nats.Msg) error {
	c.pubMu.RLock()
	err := c.active.Load().conn().PublishMsg(m)
	c.pubMu.RUnlock()
	return closedErr(err)
}

// acquire returns the link in use with one more request in flight on it,
// so that a swap does not close it under the request.
func (c *Conn) acquire() *link {
	for {
		l := c.active.Load()
		l.inflight.Add(1)
		if c.active.Load() == l {
			return l
		}
		l.inflight.Add(-1)
	}
}

// Request sends a request and waits up to timeout for the reply.
func (c *Conn) Request(subj string, data []byte, timeout time.Duration) (*nats.Msg, error) {
	l := c.acquire()
	defer l.inflight.Add(-1)
	m, err := l.conn().Request(subj, data, timeout)
	return m, closedErr(err)
}

// RequestWithContext sends a request and waits for the reply until ctx
// ends.
func (c *Conn) RequestWithContext(ctx context.Context, subj string, data []byte) (*nats.Msg, error) {
	l := c.acquire()
	defer l.inflight.Add(-1)
	m, err := l.conn().RequestWithContext(ctx, subj, data)
	return m, closedErr(err)
}

// RequestMsg sends a request message and waits up to timeout.
func (c *Conn) RequestMsg(m *nats.Msg, timeout time.Duration) (*nats.Msg, error) {
	l := c.acquire()
	defer l.inflight.Add(-1)
	r, err := l.conn().RequestMsg(m, timeout)
	return r, closedErr(err)
}

// Flush waits until the server has processed everything published so far.
func (c *Conn) Flush() error {
	return closedErr(c.active.Load().conn().Flush())
}

// FlushWithContext is Flush bounded by ctx.
func (c *Conn) FlushWithContext(ctx context.Context) error {
	return closedErr(c.active.Load().conn().FlushWithContext(ctx))
}

// closedErr wraps nats.ErrConnectionClosed in ErrClosed: callers may test
// for either.
func closedErr(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Close closes the connection at once, and the source if ConnectFromEnv
// made it. Pending messages are not delivered; see Drain.
func (c *Conn) Close() error {
	links, ok := c.markClosed()
	if !ok {
		return nil
	}
	c.cancel()
	for _, l := range links {
		l.quiet.Store(true)
		if nc := l.conn(); nc != nil {
			nc.Close()
		}
	}
	c.shutdown()
	return c.closeSource()
}

// Drain stops subscriptions, delivers what they have pending, flushes and
// closes, waiting until done or ctx ends (then it closes at once).
func (c *Conn) Drain(ctx context.Context) error {
	links, ok := c.markClosed()
	if !ok {
		return nil
	}
	c.cancel()
	var err error
	for _, l := range links {
		l.quiet.Store(true)
		nc := l.conn()
		if nc == nil {
			continue
		}
		if e := nc.Drain(); e != nil && !errors.Is(e, nats.ErrConnectionClosed) {
			err = errors.Join(err, fmt.Errorf("bus: drain: %w", e))
		}
	}
	for _, l := range links {
		select {
		case <-l.gone:
		case <-ctx.Done():
			if nc := l.conn(); nc != nil {
				nc.Close()
			}
			err = errors.Join(err, fmt.Errorf("bus: drain: %w", ctx.Err()))
		}
	}
	c.shutdown()
	return errors.Join(err, c.closeSource())
}

// markClosed marks the Conn closed and takes its links; false if it was
// already closed.
func (c *Conn) markClosed() ([]*link, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	c.closed = true
	links := c.links
	c.links = nil
	return links, true
}

// shutdown stops the Conn's goroutines and its source subscription.
// Called from a handler, it does not wait for run, which called the
// handler and returns once it is done.
func (c *Conn) shutdown() {
	if c.srcStop != nil {
		c.srcStop()
	}
	c.cancel()
	c.wg.Wait()
	if !c.inHandler.Load() {
		<-c.runDone
	}
	if c.cfg.metrics != nil {
		c.cfg.metrics.remove(c)
	}
}

func (c *Conn) closeSource() error {
	if c.cfg.ownSource && c.src != nil {
		if err := c.src.Close(); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
	}
	return nil
}
