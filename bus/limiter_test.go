package bus

import (
	"context"
	"testing"
	"time"
)

// fill takes n slots that are granted at once.
func fill(t *testing.T, l *SwapLimiter, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdaptiveSwapLimiter(t *testing.T) {
	l := NewAdaptiveSwapLimiter(8, 100*time.Millisecond)
	fill(t, l, 8)
	// A queue of waiters keeps the window full.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := make(chan error, 100)
	for i := 0; i < 100; i++ {
		go func() { waiting <- l.acquire(ctx) }()
	}
	waitFor(t, 5*time.Second, "waiters queued", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiters) == 100
	})
	// Fast dials: +1 each, so every dial done lets two more start.
	for i := 0; i < 8; i++ {
		l.release(10*time.Millisecond, true)
		<-waiting
		<-waiting
	}
	if w := l.Window(); w != 16 {
		t.Fatalf("window %d after 8 fast dials from 8, want 16", w)
	}
	// A slow dial halves it; those finishing right after do not cut again.
	l.release(200*time.Millisecond, true)
	l.release(150*time.Millisecond, true)
	l.release(150*time.Millisecond, false)
	if w := l.Window(); w != 8 {
		t.Fatalf("window %d after a slow dial at 16, want 8", w)
	}
	// Past the cut it grows by about one a round.
	for i := 0; i < 8; i++ {
		l.release(10*time.Millisecond, true)
	}
	if w := l.Window(); w != 8 && w != 9 {
		t.Fatalf("window %d after a round of fast dials past a cut at 8, want 9", w)
	}
	// A waiter that gives up leaves the queue.
	cancel()
	for i := 16; i < 100; i++ {
		if err := <-waiting; err == nil {
			l.release(0, true)
		}
	}
	// Idle again: the next burst starts from the initial window.
	l.mu.Lock()
	held := l.inflight
	l.mu.Unlock()
	for i := 0; i < held; i++ {
		l.release(10*time.Millisecond, true)
	}
	if w := l.Window(); w != 8 {
		t.Fatalf("window %d once idle, want the initial 8", w)
	}
	// A failed dial halves it, never below 4.
	fill(t, l, 2)
	for i := 0; i < 3; i++ {
		l.lastCut = time.Time{}
		l.release(time.Millisecond, false)
		fill(t, l, 1)
	}
	if w := l.Window(); w != minSwapWindow {
		t.Fatalf("window %d after failures, want %d", w, minSwapWindow)
	}
}

func TestFixedSwapLimiter(t *testing.T) {
	l := NewSwapLimiter(2)
	fill(t, l, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.acquire(ctx); err == nil {
		t.Fatal("a third dial got a slot of two")
	}
	for i := 0; i < 10; i++ {
		l.release(time.Second, false)
		fill(t, l, 1)
	}
	if w := l.Window(); w != 2 {
		t.Fatalf("fixed window moved to %d", w)
	}
}
