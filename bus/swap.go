package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
)

// SwapReport describes one swap. Messages a plain subscription received
// between Subscribed and End may have been delivered twice.
type SwapReport struct {
	Start time.Time `json:"start"`
	// Acquired is when the swap limiter let it dial; Dialed when the new
	// connection was up.
	Acquired time.Time `json:"acquired"`
	Dialed   time.Time `json:"dialed"`
	// Subscribed is when the new connection held every subscription.
	Subscribed time.Time `json:"subscribed"`
	// Switched is when publishing and requests moved to it.
	Switched time.Time `json:"switched"`
	// End is when the old connection was closed.
	End          time.Time `json:"end"`
	From         string    `json:"from,omitempty"`
	FromServerID string    `json:"from_server_id,omitempty"`
	To           string    `json:"to,omitempty"`
	ToServerID   string    `json:"to_server_id,omitempty"`
	// CrossServer is true when the old connection's server could not be
	// had; Grace was then the longer cross-server grace.
	CrossServer   bool          `json:"cross_server"`
	Grace         time.Duration `json:"grace"`
	Subscriptions int           `json:"subscriptions"`
	// OverlapDeliveries counts messages plain subscriptions received on
	// the old connection during the overlap: an upper bound of duplicates.
	OverlapDeliveries uint64 `json:"overlap_deliveries"`
	// Presented is the cert_sha256 the new connection presents.
	Presented string `json:"presented,omitempty"`
	Err       error  `json:"-"`
	Detail    string `json:"error,omitempty"`
}

var errNotConnected = errors.New("bus: swap: not connected")

// swap replaces old by a new connection with the material served now,
// make-before-break.
func (c *Conn) swap(ctx context.Context, old *link) (rep SwapReport, err error) {
	rep.Start = time.Now()
	onc := old.conn()
	fromID, fromURL, fromAddr := onc.ConnectedServerId(), onc.ConnectedUrlRedacted(), onc.ConnectedAddr()
	if fromID == "" {
		return rep, errNotConnected
	}
	rep.From, rep.FromServerID = fromURL, fromID
	if err := c.cfg.limiter.acquire(ctx); err != nil {
		return rep, fmt.Errorf("bus: swap: %w", err)
	}
	rep.Acquired = time.Now()
	nl := c.newLink()
	err = nl.connect(ctx, c.pinned(fromURL, fromAddr), false)
	dialed := time.Now()
	// The slot covers the handshake, the costly part, and nothing after.
	// A dial cut short by Close says nothing about the servers.
	if ctx.Err() != nil {
		c.cfg.limiter.release(0, true)
	} else {
		c.cfg.limiter.release(dialed.Sub(rep.Acquired), err == nil)
	}
	if err != nil {
		return rep, fmt.Errorf("bus: swap: connect: %w", err)
	}
	rep.Dialed = dialed
	nnc := nl.conn()
	abort := func(err error) (SwapReport, error) {
		c.mu.Lock()
		c.removeLinkLocked(nl)
		for s := range c.subs {
			if ns := s.detach(nl); ns != nil {
				_ = ns.Unsubscribe()
			}
		}
		c.mu.Unlock()
		old.overlapping.Store(false)
		nl.quiet.Store(true)
		nnc.Close()
		return rep, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nl.quiet.Store(true)
		nnc.Close()
		return rep, ErrClosed
	}
	c.links = append(c.links, nl)
	for s := range c.subs {
		if err := s.attach(nl); err != nil {
			c.mu.Unlock()
			return abort(fmt.Errorf("bus: swap: %w", err))
		}
		rep.Subscriptions++
	}
	c.mu.Unlock()
	// The probe is subscribed last: routes carry a server's interest in
	// order, so the old server knows every new subscription once it
	// routes the probe to the new connection.
	var probe *nats.Subscription
	if rep.Subscriptions > 0 {
		if probe, err = nnc.SubscribeSync(nnc.NewInbox()); err != nil {
			return abort(fmt.Errorf("bus: swap: probe: %w", err))
		}
	}
	// Once the server answers the flush, it holds every new subscription.
	if err := nnc.FlushTimeout(c.cfg.dialTimeout); err != nil {
		return abort(fmt.Errorf("bus: swap: flush new connection: %w", err))
	}
	rep.Subscribed = time.Now()
	old.overlapping.Store(true)
	overlapBefore := c.stats.overlap.Load()
	if probe != nil {
		if err := probeThrough(ctx, onc, probe, c.cfg.dialTimeout); err != nil {
			return abort(fmt.Errorf("bus: swap: the old connection's server did not learn the new subscriptions: %w", err))
		}
		_ = probe.Unsubscribe()
	}
	rep.To, rep.ToServerID = nnc.ConnectedUrlRedacted(), nnc.ConnectedServerId()
	if est := nl.established(); est != nil && est.presented != nil {
		rep.Presented = est.presented.CertSHA256
	}
	rep.Grace = c.cfg.grace
	if rep.ToServerID != fromID {
		rep.CrossServer, rep.Grace = true, c.cfg.crossGrace
	}
	// The old server knows the new subscriptions; the grace is margin
	// for messages it routed before, and for a publisher's server other
	// than the old one, which learns them over another route.
	t := time.NewTimer(rep.Grace)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return abort(fmt.Errorf("bus: swap: %w", ctx.Err()))
	}
	// Stop the old subscriptions and flush, one round trip for two ends:
	// once the server answers, it has processed every message published
	// on the old connection, so that one publisher's messages stay in
	// order across the switch (publishers wait for pubMu meanwhile), and
	// the UNSUBs, so that nothing more comes to the old subscriptions and
	// what came is pending.
	subs := c.unsubscribe(old)
	c.pubMu.Lock()
	_ = onc.FlushTimeout(c.cfg.dialTimeout)
	c.active.Store(nl)
	old.retired.Store(true)
	c.pubMu.Unlock()
	rep.Switched = time.Now()
	c.retire(ctx, old, subs)
	rep.End = time.Now()
	rep.OverlapDeliveries = c.stats.overlap.Load() - overlapBefore
	return rep, nil
}

// probeThrough publishes on probe's subject through from until probe
// receives it, for up to timeout.
func probeThrough(ctx context.Context, from *nats.Conn, probe *nats.Subscription, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if err := from.Publish(probe.Subject, nil); err != nil {
			return err
		}
		_, err := probe.NextMsg(wait)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, nats.ErrTimeout):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("no probe received within %s", timeout)
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// pinned lists the servers a swap dials: first the address the old
// connection uses (its server, for real, even behind a name that resolves
// to several), then the configured URLs.
func (c *Conn) pinned(fromURL, fromAddr string) []string {
	var urls []string
	if fromAddr != "" {
		scheme := "nats"
		if u, err := url.Parse(fromURL); err == nil && u.Scheme != "" {
			scheme = u.Scheme
		}
		urls = append(urls, scheme+"://"+fromAddr)
	} else if fromURL != "" {
		urls = append(urls, fromURL)
	}
	rest := append([]string(nil), c.urls...)
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return append(urls, rest...)
}

func (c *Conn) removeLinkLocked(l *link) {
	for i, x := range c.links {
		if x == l {
			c.links = append(c.links[:i:i], c.links[i+1:]...)
			return
		}
	}
}

// unsubscribe takes the link out of the Conn and sends the UNSUB of each
// of its subscriptions; messages already received are still delivered.
func (c *Conn) unsubscribe(old *link) []*nats.Subscription {
	c.mu.Lock()
	c.removeLinkLocked(old)
	var subs []*nats.Subscription
	for s := range c.subs {
		if ns := s.detach(old); ns != nil {
			subs = append(subs, ns)
		}
	}
	c.mu.Unlock()
	for _, ns := range subs {
		_ = ns.Drain() // UNSUB now; pending messages are still delivered
	}
	return subs
}

// retire closes a link that publishing has left and whose subscriptions
// the server has stopped: it waits for its requests and for the handlers
// of what is pending, then closes it. Close writes out what the handlers
// sent (replies) before it closes the socket, and the server processes
// it all before it sees the end. It polls every 5 ms, not nats.go's
// Drain's 100 ms, nor faster: a thousand swaps retiring at once should not
// wake a thousand goroutines every millisecond.
func (c *Conn) retire(ctx context.Context, old *link, subs []*nats.Subscription) {
	deadline := time.Now().Add(c.cfg.drainTimeout)
	for !idle(old, subs) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	old.quiet.Store(true)
	old.conn().Close()
}

// idle says whether a link has no request in flight, no message pending
// and no handler running. nats.go counts a message pending until its
// handler has returned.
func idle(old *link, subs []*nats.Subscription) bool {
	if old.inflight.Load() > 0 || old.handling.Load() > 0 {
		return false
	}
	for _, ns := range subs {
		if n, _, err := ns.Pending(); err == nil && n > 0 {
			return false
		}
	}
	return true
}

func (c *Conn) onSwapDone(ev swapDone, schedule func(time.Duration)) {
	rep := ev.rep
	if errors.Is(ev.err, errNotConnected) {
		if l := c.active.Load(); l != nil {
			l.force("new material while not connected")
		}
		return
	}
	if ev.err != nil {
		if c.ctx.Err() != nil {
			return
		}
		c.stats.swapFails.Add(1)
		c.swapFails++
		rep.Err, rep.Detail = ev.err, ev.err.Error()
		f := Failure{Time: time.Now(), Reason: ReasonSwap, Err: ev.err, Server: rep.From}
		c.fail(f)
		// Keep the old connection, which works, and try again later.
		schedule(jitter(backoffCeiling(c.cfg.backoffMin, c.cfg.backoffMax, c.swapFails)))
	} else {
		c.swapFails = 0
		c.stats.swaps.Add(1)
		if rep.CrossServer {
			c.stats.crossSwaps.Add(1)
		}
		c.lastSwap.Store(&rep)
		c.logger.Info("nats connection swapped to new material",
			"server", rep.To, "server_id", rep.ToServerID, "cross_server", rep.CrossServer,
			"cert_sha256", rep.Presented, "subscriptions", rep.Subscriptions,
			"overlap", rep.End.Sub(rep.Subscribed), "overlap_deliveries", rep.OverlapDeliveries)
	}
	handle(c, c.cfg.onSwap, rep)
	// Material that changed while the swap ran found it busy (act does
	// nothing then) or reached the new connection after its dial: the
	// connection in use may already be stale.
	if ev.err == nil {
		if l := c.active.Load(); l != nil {
			if est := l.established(); est != nil && c.stale(est) {
				schedule(c.spread())
			}
		}
	}
}
