package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

// ledger records which fan-out sequence numbers a member received.
type ledger struct {
	mu       sync.Mutex
	bits     []uint64
	max      uint64
	dups     int
	reorders int
	n        int
}

func (l *ledger) add(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := int(seq / 64)
	for w >= len(l.bits) {
		l.bits = append(l.bits, make([]uint64, len(l.bits)+64)...)
	}
	if l.bits[w]&(1<<(seq%64)) != 0 {
		l.dups++
		return
	}
	l.bits[w] |= 1 << (seq % 64)
	l.n++
	if seq < l.max {
		l.reorders++
	} else {
		l.max = seq
	}
}

// missing counts sequence numbers in [1, upto] not received.
func (l *ledger) missing(upto uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	miss := 0
	for s := uint64(1); s <= upto; s++ {
		w := int(s / 64)
		if w >= len(l.bits) || l.bits[w]&(1<<(s%64)) == 0 {
			miss++
		}
	}
	return miss
}

func (l *ledger) has(upto uint64) bool { return l.missing(upto) == 0 }

// member is a bus client with a fan-out subscriber and a queue-group
// responder.
type member struct {
	c      *Conn
	ledger ledger
	served atomic.Int64
	warm   atomic.Bool
}

func startMember(t testing.TB, ctx context.Context, urls string, name string, opts ...Option) *member {
	t.Helper()
	c, err := Connect(ctx, urls, append([]Option{WithName(name)}, opts...)...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m := &member{c: c}
	if _, err := c.Subscribe("fan", func(msg *nats.Msg) {
		if len(msg.Data) >= 8 {
			m.ledger.add(binary.BigEndian.Uint64(msg.Data))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueSubscribe("svc", "svc", func(msg *nats.Msg) {
		m.served.Add(1)
		_ = msg.Respond(msg.Data)
	}); err != nil {
		t.Fatal(err)
	}
	// Interest in "warm" reaches other servers after "fan" and "svc".
	if _, err := c.Subscribe("warm", func(*nats.Msg) { m.warm.Store(true) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return m
}

// warmUp publishes on "warm" until every member got one: then the
// publisher's server knows every member's interest.
func warmUp(t testing.TB, pub *nats.Conn, members []*member) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := true
		for _, m := range members {
			all = all && m.warm.Load()
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("members did not all get a warm-up message")
		}
		_ = pub.Publish("warm", nil)
		_ = pub.Flush()
		time.Sleep(20 * time.Millisecond)
	}
}

// traffic publishes sequence-numbered fan-out messages and sends
// requests from plain nats.go connections of its own.
type traffic struct {
	pub, req *nats.Conn
	seq      atomic.Uint64
	reqOK    atomic.Int64
	reqFail  atomic.Int64
	lastErr  atomic.Value
	stop     chan struct{}
	wg       sync.WaitGroup
}

func plainClient(t testing.TB, url string, ca *pki.CA, caFile, name string) *nats.Conn {
	t.Helper()
	leaf, err := ca.Issue(name, pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.ReadCertificates(caFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.Name(name), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{leaf.TLSCertificate()}, RootCAs: pki.Pool(roots)}),
		nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// startTraffic publishes rate messages a second and sends reqRate
// requests a second, each with its own goroutine so that a slow reply
// does not slow the others.
func startTraffic(t testing.TB, pub, req *nats.Conn, rate, reqRate int) *traffic {
	tr := &traffic{pub: pub, req: req, stop: make(chan struct{})}
	tr.wg.Add(2)
	go func() {
		defer tr.wg.Done()
		// Publish in small batches on a 10 ms tick.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-tr.stop:
				return
			case now := <-tick.C:
				want := uint64(now.Sub(start).Seconds() * float64(rate))
				for tr.seq.Load() < want {
					var b [8]byte
					binary.BigEndian.PutUint64(b[:], tr.seq.Add(1))
					_ = pub.Publish("fan", b[:])
				}
			}
		}
	}()
	go func() {
		defer tr.wg.Done()
		if reqRate <= 0 {
			return
		}
		tick := time.NewTicker(time.Second / time.Duration(reqRate))
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
				inflight.Add(1)
				go func(i int) {
					defer inflight.Done()
					body := []byte(fmt.Sprint(i))
					r, err := req.Request("svc", body, 10*time.Second)
					if err == nil && string(r.Data) != string(body) {
						err = fmt.Errorf("reply %q to %q", r.Data, body)
					}
					if err != nil {
						tr.reqFail.Add(1)
						tr.lastErr.Store(err)
						return
					}
					tr.reqOK.Add(1)
				}(i)
			}
		}
	}()
	return tr
}

// end stops the traffic and returns the last sequence number published,
// after flushing it to the server.
func (tr *traffic) end(t testing.TB) uint64 {
	close(tr.stop)
	tr.wg.Wait()
	if err := tr.pub.FlushTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return tr.seq.Load()
}

// switchable is a Source whose material a test sets, shared by many
// members: one rotation, every member sees it at once, as a fleet does.
type switchable struct {
	mu   sync.Mutex
	cur  *material.StaticSource
	gen  uint64
	subs map[int]func(material.Event)
	next int
}

var _ material.Source = (*switchable)(nil)

func newSwitchable(leaf *pki.Leaf, roots []byte) *switchable {
	s := &switchable{subs: map[int]func(material.Event){}}
	s.set(leaf, roots, false)
	return s
}

func (s *switchable) set(leaf *pki.Leaf, rootsPEM []byte, notify bool) {
	roots, _ := pki.ParseCertificates(rootsPEM)
	src := material.NewStaticSource(leaf.TLSCertificate(), roots)
	s.mu.Lock()
	s.gen++
	s.cur = src
	snap := s.snapLocked()
	var fns []func(material.Event)
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	if notify {
		for _, fn := range fns {
			fn(material.Event{Kind: material.EventLoaded, Time: time.Now(), Reason: "test", Snapshot: snap})
		}
	}
}

func (s *switchable) snapLocked() material.Snapshot {
	snap := s.cur.Snapshot()
	snap.Generation = s.gen
	return snap
}

func (s *switchable) Cert() (tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Cert()
}

func (s *switchable) RootCAs() (*x509.CertPool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.RootCAs()
}

func (s *switchable) Snapshot() material.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapLocked()
}

func (s *switchable) Subscribe(fn func(material.Event)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

func (s *switchable) Refresh(ctx context.Context) error { return ctx.Err() }
func (s *switchable) Close() error                      { return nil }
