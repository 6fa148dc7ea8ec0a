package bus

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Subscription is a subscription made through a Conn. It lives across
// swaps: bus re-creates it on every new connection, and Unsubscribe
// removes it from all of them.
//
// Its handler is never called concurrently, as with nats.go, even during
// a swap's overlap when two connections deliver to it.
type Subscription struct {
	c       *Conn
	subject string
	queue   string
	handler nats.MsgHandler

	dmu sync.Mutex // serialises handler calls across connections

	mu     sync.Mutex // guards subs
	subs   map[*link]*nats.Subscription
	closed atomic.Bool

	delivered atomic.Uint64
	overlap   atomic.Uint64
}

// Subscribe subscribes to subj; every connection of the Conn delivers to
// h, one message at a time.
func (c *Conn) Subscribe(subj string, h nats.MsgHandler) (*Subscription, error) {
	return c.subscribe(subj, "", h)
}

// QueueSubscribe subscribes to subj in queue group queue.
func (c *Conn) QueueSubscribe(subj, queue string, h nats.MsgHandler) (*Subscription, error) {
	if queue == "" {
		return nil, fmt.Errorf("bus: queue subscribe %s: empty queue group", subj)
	}
	return c.subscribe(subj, queue, h)
}

func (c *Conn) subscribe(subj, queue string, h nats.MsgHandler) (*Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("bus: subscribe %s: nil handler", subj)
	}
	s := &Subscription{c: c, subject: subj, queue: queue, handler: h, subs: map[*link]*nats.Subscription{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	for _, l := range c.links {
		if err := s.attach(l); err != nil {
			s.detachAll()
			return nil, err
		}
	}
	c.subs[s] = struct{}{}
	return s, nil
}

// attach subscribes on l's connection.
func (s *Subscription) attach(l *link) error {
	var ns *nats.Subscription
	var err error
	if s.queue == "" {
		ns, err = l.conn().Subscribe(s.subject, s.deliver(l))
	} else {
		ns, err = l.conn().QueueSubscribe(s.subject, s.queue, s.deliver(l))
	}
	if err != nil {
		return fmt.Errorf("bus: subscribe %s: %w", s.subject, err)
	}
	s.mu.Lock()
	s.subs[l] = ns
	s.mu.Unlock()
	return nil
}

// detach forgets l's subscription and returns it.
func (s *Subscription) detach(l *link) *nats.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.subs[l]
	delete(s.subs, l)
	return ns
}

func (s *Subscription) detachAll() {
	s.mu.Lock()
	subs := s.subs
	s.subs = map[*link]*nats.Subscription{}
	s.mu.Unlock()
	for _, ns := range subs {
		_ = ns.Unsubscribe()
	}
}

// deliver is the nats.go handler for l's subscription.
func (s *Subscription) deliver(l *link) nats.MsgHandler {
	return func(m *nats.Msg) {
		l.handling.Add(1)
		defer l.handling.Add(-1)
		if s.closed.Load() {
			return
		}
		// A plain subscription gets every message from both connections
		// while they overlap: the old one's deliveries then may be
		// duplicates. A queue group gives each message to one member.
		if s.queue == "" && l.overlapping.Load() {
			s.overlap.Add(1)
			s.c.stats.overlap.Add(1)
		}
		s.delivered.Add(1)
		s.dmu.Lock()
		defer s.dmu.Unlock()
		s.handler(m)
	}
}

// Unsubscribe removes the subscription from every connection.
func (s *Subscription) Unsubscribe() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	s.mu.Lock()
	subs := s.subs
	s.subs = map[*link]*nats.Subscription{}
	s.mu.Unlock()
	var first error
	for _, ns := range subs {
		if err := ns.Unsubscribe(); err != nil && first == nil && err != nats.ErrConnectionClosed && err != nats.ErrBadSubscription {
			first = fmt.Errorf("bus: unsubscribe %s: %w", s.subject, err)
		}
	}
	return first
}

// Subject is the subject subscribed to.
func (s *Subscription) Subject() string { return s.subject }

// Queue is the queue group, empty for a plain subscription.
func (s *Subscription) Queue() string { return s.queue }

// Delivered counts messages handed to the handler.
func (s *Subscription) Delivered() uint64 { return s.delivered.Load() }

// OverlapDeliveries counts messages a plain subscription's old connection
// delivered while a swap's new connection was subscribed too: an upper
// bound of the duplicates the handler saw.
func (s *Subscription) OverlapDeliveries() uint64 { return s.overlap.Load() }
