package bus

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/pki"
)

// member is a bus client with a fan-out subscriber and a queue-group
// responder.
type member struct {
	c      *Conn
	ledger seqledger.Ledger
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
		if seq, ok := seqledger.Decode(msg.Data); ok {
			m.ledger.Record(seq)
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
					_ = pub.Publish("fan", seqledger.Append(nil, tr.seq.Add(1)))
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
