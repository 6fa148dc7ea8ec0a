package drill

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/seqledger"
)

// Subjects of the drill's traffic, as examples/worker names them for the
// prefix "drill", so that goroutine and process members serve the same.
const (
	fanoutSubject  = workerPrefix + ".fanout"
	requestSubject = workerPrefix + ".rpc"
	responderQueue = workerPrefix
)

// publisher sends numbered messages to every member at a steady pace. Its
// connection belongs to the harness and is never rotated, so that what a
// member misses is the member's loss.
type publisher struct {
	nc       *nats.Conn
	interval time.Duration
	last     atomic.Uint64 // highest sequence number published
	failed   atomic.Int64  // publishes nats.go refused
}

// run publishes until ctx ends. It catches up after a slow tick instead of
// drifting, so the rate holds under load.
func (p *publisher) run(ctx context.Context) {
	tick := p.interval
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var sent uint64
	buf := make([]byte, 0, 8)
	for {
		due := uint64(time.Since(start)/p.interval) + 1
		for ; sent < due; sent++ {
			seq := p.last.Load() + 1
			if err := p.nc.Publish(fanoutSubject, seqledger.Append(buf[:0], seq)); err != nil {
				p.failed.Add(1)
				continue
			}
			p.last.Store(seq)
		}
		select {
		case <-ctx.Done():
			// The last message sent must be on the wire before the
			// window closes, so that the drain can wait for it.
			_ = p.nc.FlushTimeout(2 * time.Second)
			return
		case <-t.C:
		}
	}
}

// requester sends requests to the members' queue group at a steady pace and
// counts the ones that fail: no reply in time, or no responder at all.
type requester struct {
	nc       *nats.Conn
	interval time.Duration
	timeout  time.Duration
	answers  *answerBook

	sent, ok    atomic.Int64
	timedOut    atomic.Int64
	noResponder atomic.Int64
	otherErr    atomic.Int64

	mu     sync.Mutex
	failed []uint64 // ids of failed requests, to attribute them afterwards
}

// maxInFlight bounds the requests waiting for a reply at once; past it the
// requester waits rather than growing without bound.
const maxInFlight = 2048

// run sends requests until ctx ends and returns when every request sent has
// been answered or timed out.
func (r *requester) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	tick := r.interval
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var id uint64
	for {
		due := uint64(time.Since(start)/r.interval) + 1
		for ; id < due; id++ {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func(id uint64) {
				defer wg.Done()
				defer func() { <-sem }()
				r.one(id)
			}(id + 1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// one sends request id. It does not take the run's context: a request sent
// is always given its whole timeout, so that stopping traffic fails none.
func (r *requester) one(id uint64) {
	r.sent.Add(1)
	_, err := r.nc.Request(requestSubject, []byte(strconv.FormatUint(id, 10)), r.timeout)
	switch {
	case err == nil:
		r.ok.Add(1)
		return
	case errors.Is(err, nats.ErrNoResponders):
		r.noResponder.Add(1)
	case errors.Is(err, nats.ErrTimeout):
		r.timedOut.Add(1)
	default:
		r.otherErr.Add(1)
	}
	r.mu.Lock()
	r.failed = append(r.failed, id)
	r.mu.Unlock()
}

func (r *requester) failures() int64 {
	return r.timedOut.Load() + r.noResponder.Load() + r.otherErr.Load()
}

// answerBook remembers which member answered which request, so that a
// request that timed out after a member answered it is charged to that
// member. A request nobody answered is charged to the fleet only.
type answerBook struct {
	mu sync.Mutex
	by map[uint64]int // request id -> member index
}

func newAnswerBook() *answerBook { return &answerBook{by: map[uint64]int{}} }

func (b *answerBook) answered(id uint64, member int) {
	b.mu.Lock()
	b.by[id] = member
	b.mu.Unlock()
}

func (b *answerBook) who(id uint64) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.by[id]
	return m, ok
}

// connectHarness dials one of the drill's own connections: never rotated,
// reconnecting for ever, so a harness hiccup shows up as a failure rather
// than ending the run.
func connectHarness(s *setup, name, url string) (*nats.Conn, error) {
	cert, err := s.harnessCert(name)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, nats.Secure(s.harnessTLS(cert)), nats.Name(name),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectBufSize(64<<20))
	if err != nil {
		return nil, fmt.Errorf("drill: connect %s: %w", name, err)
	}
	return nc, nil
}
