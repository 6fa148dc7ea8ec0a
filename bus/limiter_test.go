package bus

import (
	"context"
	"testing"
	"time"
)

// burst is a limiter with every slot of its window taken and more swaps
// waiting, as when a fleet's material changes at once.
type burst struct {
	l       *SwapLimiter
	cancel  context.CancelFunc
	waiting chan error
}

func newBurst(t *testing.T, l *SwapLimiter, waiters int) *burst {
	t.Helper()
	for i := l.Window(); i > 0; i-- {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &burst{l: l, cancel: cancel, waiting: make(chan error, waiters)}
	for i := 0; i < waiters; i++ {
		go func() { b.waiting <- l.acquire(ctx) }()
	}
	waitFor(t, 5*time.Second, "waiters queued", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiters) == waiters
	})
	return b
}

// end gives up the waiting swaps and releases every slot: the limiter
// is idle again.
func (b *burst) end() {
	b.cancel()
	for i := cap(b.waiting); i > 0; i-- {
		<-b.waiting // a slot granted is counted in flight
	}
	b.l.mu.Lock()
	held := b.l.inflight
	b.l.mu.Unlock()
	for ; held > 0; held-- {
		b.l.release(10*time.Millisecond, true)
	}
}

func TestAdaptiveSwapLimiter(t *testing.T) {
	l := NewAdaptiveSwapLimiter(8, 100*time.Millisecond)
	// The clock moves only when the test says so.
	now := time.Unix(1e9, 0)
	l.now = func() time.Time { return now }
	b := newBurst(t, l, 100)
	// Fast dials with swaps waiting: +1 each, doubling in a round.
	for i := 0; i < 8; i++ {
		l.release(10*time.Millisecond, true)
	}
	if w := l.Window(); w != 16 {
		t.Fatalf("window %d after 8 fast dials from 8, want 16", w)
	}
	// Slow dials: once the average is past the target, a quarter off,
	// once a round (the first slow dial still leaves the average low).
	for i := 0; i < 4; i++ {
		l.release(400*time.Millisecond, true)
	}
	if w := l.Window(); w != 12 {
		t.Fatalf("window %d after slow dials at 17, want 12", w)
	}
	// A failed dial in the next round halves it.
	now = now.Add(time.Second)
	l.release(50*time.Millisecond, false)
	if w := l.Window(); w != 6 {
		t.Fatalf("window %d after a failed dial at 12, want 6", w)
	}
	b.end()
	if w := l.Window(); w != 8 {
		t.Fatalf("window %d once idle, want the initial 8", w)
	}

	// Every dial slow from the start, well above the target: the servers
	// are busy with other work, and fewer dials at once would only go
	// slower. The window grows rather than collapse.
	b = newBurst(t, l, 100)
	for i := 0; i < 8; i++ {
		l.release(400*time.Millisecond, true)
	}
	if w := l.Window(); w != 16 {
		t.Fatalf("window %d after 8 dials as slow as the fastest, want 16", w)
	}
	b.end()
}

func TestFixedSwapLimiter(t *testing.T) {
	l := NewSwapLimiter(2)
	b := newBurst(t, l, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.acquire(ctx); err == nil {
		t.Fatal("a dial got a slot of a full window")
	}
	for i := 0; i < 10; i++ {
		l.release(time.Second, false)
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if w := l.Window(); w != 2 {
		t.Fatalf("fixed window moved to %d", w)
	}
	b.end()
}

// A zero SwapLimiter lets one dial at a time through rather than none.
func TestZeroSwapLimiter(t *testing.T) {
	var l SwapLimiter
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := l.acquire(ctx); err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		l.release(time.Millisecond, true)
	}
	if w := l.Window(); w != 1 {
		t.Fatalf("window %d, want 1", w)
	}
}
