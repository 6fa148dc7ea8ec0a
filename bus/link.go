package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

// attempt is one connection attempt of a link: one dial, its handshake
// and CONNECT. bus follows it through its dialer and TLS callbacks, which
// nats.go calls on its connecting goroutine, so that every failure is
// counted, including those nats.go hands no callback.
type attempt struct {
	url     string // chosen by pick; empty on the first connect
	addr    string // dialed
	start   time.Time
	initial bool // made by nats.Connect itself, before it returned
	stage   stage
	err     error
	delay   time.Duration // waited before it

	set       material.Set // read once per attempt: attemptSet
	gen       uint64
	cert      *tls.Certificate
	presented *pki.CertInfo
	pool      *x509.CertPool
	poolSet   bool
	roots     []pki.CertInfo
	tlsName   string
	notListed bool // the server did not list our issuer among acceptable CAs

	done      atomic.Bool // read lock-free by trackedConn
	ok        bool
	serverID  string
	connected time.Time // when nats.go reported the connection up
}

// link is one nats.Conn and what bus knows about it. A Conn has one link,
// two during a swap.
type link struct {
	c  *Conn
	id uint64
	nc atomic.Pointer[nats.Conn]

	ready chan struct{} // closed once nc is set
	up    chan struct{} // closed on the first good connection
	gone  chan struct{} // closed when nats.go reports the connection closed

	upOnce, goneOnce, readyOnce sync.Once

	mu        sync.Mutex
	att       *attempt
	initial   bool
	fails     int
	cheapFail bool // the last failure reached no server
	forceNext bool
	prefer    string // a forced reconnect goes back to this server
	est       *attempt
	forcing   bool // the next disconnect is bus's own doing

	inflight    atomic.Int64 // requests in flight
	handling    atomic.Int64 // handlers running for this link's subscriptions
	retired     atomic.Bool  // publishing has moved to another link
	overlapping atomic.Bool  // another link holds the same subscriptions
	quiet       atomic.Bool  // closing is bus's own doing
}

func (c *Conn) newLink() *link {
	return &link{
		c:     c,
		id:    c.linkSeq.Add(1),
		ready: make(chan struct{}),
		up:    make(chan struct{}),
		gone:  make(chan struct{}),
	}
}

// options are the nats.go options of this link.
func (l *link) options(retry bool) []nats.Option {
	c := l.c
	opts := append([]nats.Option{}, c.cfg.natsOpts...)
	opts = append(opts,
		nats.Name(c.name),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectToServer(l.pick),
		nats.SetCustomDialer(&dialer{l: l, nd: net.Dialer{Timeout: c.cfg.dialTimeout}}),
		nats.SkipHostLookup(),
		nats.DontRandomize(),
		nats.Timeout(c.cfg.dialTimeout),
		nats.RetryOnFailedConnect(retry),
		nats.DisconnectErrHandler(l.onDisconnect),
		nats.ReconnectHandler(l.onReconnect),
		nats.ConnectHandler(l.onConnect),
		nats.ClosedHandler(l.onClosed),
		nats.ErrorHandler(l.onAsyncError),
	)
	if c.secure {
		opts = append(opts, nats.Secure(l.tlsConfig()))
		var certCB nats.TLSCertHandler
		if c.hasCert {
			certCB = l.certCB
		}
		opts = append(opts, nats.ClientTLSConfig(certCB, l.rootsCB))
	}
	return opts
}

// tlsConfig is the base configuration nats.go clones for every dial. No
// ClientSessionCache: a resumed session would keep the identity of the
// handshake that made it, not the material loaded since.
func (l *link) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// VerifyConnection verifies the chain and the host name; see
		// serverNames for why bus does it rather than crypto/tls.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection:   l.verify,
	}
	if l.c.hasCert {
		cfg.GetClientCertificate = l.clientCert
	}
	return cfg
}

// connect makes the link's nats.Conn. With retry it keeps trying, with
// backoff, until ctx ends; without, it tries every server once.
func (l *link) connect(ctx context.Context, urls []string, retry bool) error {
	l.mu.Lock()
	l.initial = true
	l.mu.Unlock()
	nc, err := nats.Connect(strings.Join(urls, ","), l.options(retry)...)
	l.mu.Lock()
	l.initial = false
	a := l.att
	l.mu.Unlock()
	if err != nil {
		if a != nil {
			l.finish(a, false, 0)
		}
		return err
	}
	l.nc.Store(nc)
	l.readyOnce.Do(func() { close(l.ready) })
	if nc.IsConnected() {
		if a != nil {
			l.finish(a, true, 0)
		}
		l.markUp(nc, false)
		return nil
	}
	select {
	case <-l.up:
		return nil
	case <-ctx.Done():
		l.quiet.Store(true)
		nc.Close()
		if f := l.c.lastFailure.Load(); f != nil {
			return fmt.Errorf("%w (last failure: %s: %s)", ctx.Err(), f.Reason, f.Detail)
		}
		return ctx.Err()
	case <-l.gone:
		return nats.ErrConnectionClosed
	}
}

// conn returns the nats.Conn; nil until connect has made it.
func (l *link) conn() *nats.Conn { return l.nc.Load() }

// newAttempt starts recording an attempt. l.mu is held.
func (l *link) newAttempt(url string, delay time.Duration) *attempt {
	a := &attempt{url: url, start: time.Now(), initial: l.initial, delay: delay}
	l.att = a
	l.c.stats.attempts.Add(1)
	return a
}

// pick is nats.go's ReconnectToServer callback, called before every
// reconnection attempt with nats.go's lock held (so no nats.Conn method
// may be called here). It settles the previous attempt, chooses the
// server and the backoff: one wait per attempt, not per pass over the
// servers, so that the rate of attempts does not grow with the cluster.
func (l *link) pick(servers []nats.Server, _ nats.ServerInfo) (*nats.Server, time.Duration) {
	if len(servers) == 0 {
		return nil, 0
	}
	l.mu.Lock()
	var settled *attempt
	var settledOK bool
	if a := l.att; a != nil && !a.done.Load() {
		// nats.go counts attempts per server in Reconnects and zeroes it
		// on success: a previous attempt whose server shows zero made the
		// connection that has just been lost.
		ok := false
		if !a.initial && a.url != "" {
			for i := range servers {
				if servers[i].URL.String() == a.url && servers[i].Reconnects == 0 {
					ok = true
				}
			}
		}
		settled, settledOK = a, ok
	}
	if settled != nil {
		l.settleLocked(settled, settledOK)
	}
	delay := l.delayLocked()
	idx := l.chooseLocked(servers)
	l.newAttempt(servers[idx].URL.String(), delay)
	l.mu.Unlock()
	if settled != nil {
		l.report(settled, settledOK, delay)
	}
	return &servers[idx], delay
}

// delayLocked is the full-jitter backoff before the next attempt.
func (l *link) delayLocked() time.Duration {
	if l.forceNext {
		l.forceNext = false
		return 0
	}
	cfg := l.c.cfg
	hi := cfg.backoffMax
	if l.cheapFail {
		hi = min(hi, DialBackoffMax)
	}
	return jitter(backoffCeiling(cfg.backoffMin, hi, l.fails))
}

// backoffCeiling is min(hi, lo·2ⁿ), without overflow.
func backoffCeiling(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for ; n > 0 && d < hi; n-- {
		if d <= 0 || d > hi/2 {
			return hi
		}
		d *= 2
	}
	return min(d, hi)
}

// jitter is a random wait in [0, ceil): full jitter.
func jitter(ceil time.Duration) time.Duration {
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}

// chooseLocked picks the server tried least since its last success, at
// random among equals, or the preferred one after a forced reconnect.
func (l *link) chooseLocked(servers []nats.Server) int {
	if l.prefer != "" {
		p := l.prefer
		l.prefer = ""
		for i := range servers {
			if servers[i].URL.String() == p {
				return i
			}
		}
	}
	best, n := -1, 0
	for i := range servers {
		switch {
		case best < 0 || servers[i].Reconnects < servers[best].Reconnects:
			best, n = i, 1
		case servers[i].Reconnects == servers[best].Reconnects:
			n++
			if rand.N(n) == 0 {
				best = i
			}
		}
	}
	return best
}

// settleLocked closes an attempt's record and updates the backoff state.
func (l *link) settleLocked(a *attempt, ok bool) {
	if a.done.Swap(true) {
		return
	}
	a.ok = ok
	if ok {
		l.fails, l.cheapFail = 0, false
		l.est = a
		return
	}
	l.fails++
	l.cheapFail = a.stage <= stageDialFailed
	l.c.stats.failedAttempts.Add(1)
}

// finish settles an attempt outside pick and reports it.
func (l *link) finish(a *attempt, ok bool, next time.Duration) {
	l.mu.Lock()
	if a.done.Load() {
		l.mu.Unlock()
		return
	}
	l.settleLocked(a, ok)
	l.mu.Unlock()
	l.report(a, ok, next)
}

// report hands a failed attempt to the connection's goroutine. When the
// next attempt waits long enough, the error nats.go kept for it
// (LastError, the only place a TLS 1.2 rejection lands) is read first.
func (l *link) report(a *attempt, ok bool, next time.Duration) {
	if ok {
		return
	}
	f := Failure{
		Time: time.Now(), Attempt: true, Server: a.url, Generation: a.gen, NextDelay: next,
		Reason: classify(a.stage, a.err), Err: a.err,
	}
	if f.Server == "" {
		f.Server = a.addr
	}
	if a.presented != nil {
		f.Presented = a.presented.CertSHA256
	}
	if a.notListed && f.Reason == ReasonRejected {
		f.Err = fmt.Errorf("the server did not list the issuer of our certificate among the CAs it accepts: %w", errOr(a.err))
	}
	if next < 20*time.Millisecond || a.stage < stageDialed {
		l.c.enqueue(f)
		return
	}
	l.c.goOwned(func() {
		// Blocks until nats.go releases its lock, which it does before
		// waiting out the delay; the error then is still this attempt's.
		select {
		case <-l.ready:
		case <-l.c.ctx.Done():
			l.c.enqueue(f)
			return
		}
		if err := l.conn().LastError(); err != nil {
			if r, ok := classifyErr(err); ok {
				f.Reason = r
			}
			if f.Err == nil || !a.notListed {
				f.Err = err
			}
		}
		l.c.enqueue(f)
	})
}

func errOr(err error) error {
	if err == nil {
		return errors.New("handshake refused")
	}
	return err
}

// attemptSet returns the material of the attempt in progress, read once
// per attempt, so that the certificate, roots and generation nats.go's
// two callbacks get, and bus records, come from one load.
func (l *link) attemptSet() (material.Set, error) {
	l.mu.Lock()
	if a := l.att; a != nil && !a.done.Load() && a.poolSet {
		set := a.set
		l.mu.Unlock()
		return set, nil
	}
	l.mu.Unlock()
	set, err := material.CurrentOf(l.c.src)
	if err != nil {
		return set, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.att
	switch {
	case a == nil || a.done.Load():
	case a.poolSet:
		set = a.set // recorded meanwhile: keep the attempt's
	default:
		a.set, a.gen = set, set.Snapshot.Generation
		a.pool, a.poolSet, a.roots = set.Roots, true, set.Snapshot.Roots
		if len(set.Cert.Certificate) > 0 {
			a.cert, a.presented = &set.Cert, describeLeaf(set.Cert, set.Snapshot)
		}
	}
	return set, nil
}

// certCB is nats.go's TLSCertHandler: the certificate for this dial.
func (l *link) certCB() (tls.Certificate, error) {
	set, err := l.attemptSet()
	if err == nil && len(set.Cert.Certificate) == 0 {
		err = material.ErrNoCertificate
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("bus: certificate: %w", err)
	}
	return set.Cert, nil
}

// rootsCB is nats.go's RootCAsHandler: the roots for this dial.
func (l *link) rootsCB() (*x509.CertPool, error) {
	set, err := l.attemptSet()
	if err != nil {
		return nil, fmt.Errorf("bus: roots: %w", err)
	}
	return set.Roots, nil
}

// clientCert presents the certificate certCB chose for this dial, and
// notes when the server did not list its issuer (Go would then send
// none; bus sends it and lets the server decide).
func (l *link) clientCert(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	var cert *tls.Certificate
	a := l.att
	if a != nil && !a.done.Load() {
		cert = a.cert
	}
	l.mu.Unlock()
	if cert == nil {
		c, err := l.c.src.Cert()
		if err != nil {
			return &tls.Certificate{}, nil
		}
		cert = &c
	}
	if err := cri.SupportsCertificate(cert); err != nil && a != nil {
		l.mu.Lock()
		if !a.done.Load() {
			a.notListed = true
		}
		l.mu.Unlock()
	}
	return cert, nil
}

// verify is the dial's VerifyConnection: chain against this dial's roots,
// leaf against the names serverNames allows.
func (l *link) verify(cs tls.ConnectionState) error {
	l.mu.Lock()
	a := l.att
	if a != nil && a.done.Load() {
		a = nil
	}
	var pool *x509.CertPool
	poolSet, dialed := false, ""
	if a != nil {
		pool, poolSet, dialed = a.pool, a.poolSet, a.addr
	}
	l.mu.Unlock()
	if !poolSet {
		var err error
		if pool, err = l.c.src.RootCAs(); err != nil {
			return fmt.Errorf("bus: roots: %w", err)
		}
	}
	name, err := verifyServer(cs, pool, l.c.names.names(cs.ServerName, dialed))
	if a != nil {
		l.mu.Lock()
		switch {
		case a.done.Load():
		case err != nil:
			a.stage, a.err = stageServerRefused, err
		default:
			a.stage, a.tlsName = stageServerVerified, name
		}
		l.mu.Unlock()
	}
	return err
}

// dialer is nats.go's CustomDialer: it opens every attempt's record.
type dialer struct {
	l  *link
	nd net.Dialer
}

func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	l := d.l
	l.mu.Lock()
	a := l.att
	var settled *attempt
	if a == nil || a.done.Load() || a.stage != stageNew {
		if a != nil && !a.done.Load() {
			// nats.Connect moved on to the next server: this one failed.
			l.settleLocked(a, false)
			settled = a
		}
		a = l.newAttempt("", 0)
	}
	a.addr, a.stage = addr, stageDialing
	l.mu.Unlock()
	if settled != nil {
		l.report(settled, false, 0)
	}
	conn, err := d.nd.Dial(network, addr)
	l.mu.Lock()
	switch {
	case a.done.Load():
	case err != nil:
		a.stage, a.err = stageDialFailed, err
	default:
		a.stage = stageDialed
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: conn, l: l, a: a}, nil
}

// trackedConn keeps the first I/O error of an attempt that has not
// succeeded yet: with TLS 1.3 a refused client certificate shows only as
// a broken pipe or EOF here.
type trackedConn struct {
	net.Conn
	l *link
	a *attempt
}

func (t *trackedConn) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if err != nil && !t.a.done.Load() {
		t.note(err)
	}
	return n, err
}

func (t *trackedConn) Write(b []byte) (int, error) {
	n, err := t.Conn.Write(b)
	if err != nil && !t.a.done.Load() {
		t.note(err)
	}
	return n, err
}

func (t *trackedConn) note(err error) {
	t.l.mu.Lock()
	if t.a.err == nil && !t.a.done.Load() {
		t.a.err = err
	}
	t.l.mu.Unlock()
}

// markUp records a good connection: presented certificate, roots, server.
func (l *link) markUp(nc *nats.Conn, reconnected bool) {
	l.mu.Lock()
	// The attempt in progress made this connection unless a later one has
	// begun since (the callback is asynchronous): then pick has settled it.
	if a := l.att; a != nil && !a.done.Load() && (a.stage >= stageServerVerified || !l.c.secure && a.stage == stageDialed) {
		l.settleLocked(a, true)
	}
	est := l.est
	if est != nil {
		est.serverID = nc.ConnectedServerId()
		if est.connected.IsZero() {
			est.connected = time.Now()
		}
	}
	l.mu.Unlock()
	first := false
	l.upOnce.Do(func() { first = true; close(l.up) })
	if !reconnected && !first {
		return // nats.go's ConnectHandler and connect both report it
	}
	if reconnected {
		l.c.stats.reconnects.Add(1)
	} else {
		l.c.stats.connects.Add(1)
	}
	l.c.enqueue(upEvent{l: l, reconnected: reconnected, url: nc.ConnectedUrlRedacted(), serverID: nc.ConnectedServerId(), serverName: nc.ConnectedServerName()})
}

func (l *link) onConnect(nc *nats.Conn)   { l.markUp(nc, false) }
func (l *link) onReconnect(nc *nats.Conn) { l.markUp(nc, true) }

func (l *link) onDisconnect(nc *nats.Conn, err error) {
	l.mu.Lock()
	forced := l.forcing
	l.forcing = false
	est := l.est
	l.mu.Unlock()
	if l.quiet.Load() || l.retired.Load() {
		return
	}
	l.c.stats.disconnects.Add(1)
	l.c.enqueue(downEvent{l: l, err: err, forced: forced, est: est})
}

func (l *link) onClosed(*nats.Conn) {
	l.goneOnce.Do(func() { close(l.gone) })
}

func (l *link) onAsyncError(nc *nats.Conn, sub *nats.Subscription, err error) {
	if err == nil {
		return
	}
	if r, ok := classifyErr(err); ok && (r != ReasonAuthorization || !nc.IsConnected()) {
		// nats.go also hands some failed attempts (an error reading the
		// PONG to CONNECT) to this handler: bus has counted them already.
		l.c.logger.Debug("nats async error of an attempt", "reason", string(r), "err", err)
		return
	}
	f := Failure{Time: time.Now(), Reason: classifyAsync(err), Err: err}
	if sub != nil {
		f.Detail = "subject " + sub.Subject
	}
	l.c.enqueue(f)
}

// force makes the link reconnect now: when connected, a reconnect with
// the current material (to the same server); when reconnecting, the
// pending wait is cut short.
func (l *link) force(reason string) {
	nc := l.conn()
	if nc == nil || nc.IsClosed() {
		return
	}
	l.mu.Lock()
	if nc.IsConnected() {
		l.forceNext, l.forcing = true, true
		if l.est != nil {
			l.prefer = l.est.url
		}
	}
	l.mu.Unlock()
	l.c.logger.Debug("nats reconnect forced", "conn", l.c.name, "why", reason)
	// ForceReconnect takes nats.go's lock, held for a whole attempt.
	l.c.goOwned(func() { _ = nc.ForceReconnect() })
}

// established returns the attempt that made the connection in use.
func (l *link) established() *attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.est
}

func describeLeaf(cert tls.Certificate, snap material.Snapshot) *pki.CertInfo {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return nil
	}
	if snap.Leaf != nil && snap.Leaf.CertSHA256 == pki.CertSHA256(leaf) {
		ci := *snap.Leaf
		return &ci
	}
	ci := pki.Describe(leaf)
	return &ci
}
