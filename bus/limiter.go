package bus

import (
	"context"
	"sync"
	"time"
)

// SwapLimiter bounds how many connections of one process dial for a swap
// at the same time. Share one among all the connections of a process
// (WithSwapLimiter). A slot covers the dial and its handshake only, the
// work that costs the servers; the waits of a swap (grace, drain) hold
// none.
//
// A fixed limiter (NewSwapLimiter) allows a set number of dials. An
// adaptive one (NewAdaptiveSwapLimiter, the default) sets its window by
// the dials' times: on an idle server more dials at once only queue, but
// on a server busy delivering messages each handshake gets a share of
// the CPU, so the number of handshakes at once sets the pace (measured:
// 1,000 handshakes under 200k deliveries/s took 11 s 8 at a time, 2.1 s
// 64 at a time, 1.2 s 256 at a time). The zero SwapLimiter allows one
// dial at a time.
type SwapLimiter struct {
	mu       sync.Mutex
	window   float64 // dials allowed at once
	inflight int
	waiters  []chan struct{} // first come, first served

	adaptive bool
	initial  float64
	target   time.Duration
	// Of the current burst (reset when idle):
	fastest time.Duration
	avg     time.Duration // moving average, each dial weighing 1/8
	lastCut time.Time

	now func() time.Time // the clock; tests set their own
}

// Bounds of an adaptive limiter's window.
const (
	minSwapWindow = 4
	maxSwapWindow = 1024
)

// NewSwapLimiter allows n swaps to dial at once (n < 1 means 1).
func NewSwapLimiter(n int) *SwapLimiter {
	return &SwapLimiter{window: float64(max(n, 1))}
}

// NewAdaptiveSwapLimiter starts by allowing n swaps to dial at once (n <
// 1 means DefaultSwapConcurrency) and adapts to the average dial time of
// the burst. Slow is above target and above twice the burst's fastest
// dial: when every dial is slow, however few at once, the servers are
// busy with other work and fewer dials would only go slower. While dials
// are well under slow and swaps wait, each dial widens the window by one
// (doubling it every round of dials); when they are slow it shrinks by a
// quarter, by half after a failed dial, at most once a round. The window
// stays within [4, 1024] and starts again from n whenever no swap is
// waiting or dialing. target ≤ 0 means DefaultSwapDialTarget.
func NewAdaptiveSwapLimiter(n int, target time.Duration) *SwapLimiter {
	if n < 1 {
		n = DefaultSwapConcurrency
	}
	if target <= 0 {
		target = DefaultSwapDialTarget
	}
	w := min(max(float64(n), minSwapWindow), maxSwapWindow)
	return &SwapLimiter{window: w, adaptive: true, initial: w, target: target}
}

var defaultLimiter = NewAdaptiveSwapLimiter(DefaultSwapConcurrency, DefaultSwapDialTarget)

// Window is how many swaps may dial at once now.
func (l *SwapLimiter) Window() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.windowLocked())
}

// windowLocked is the window, at least one dial, so that a zero
// SwapLimiter does not block every swap. l.mu is held.
func (l *SwapLimiter) windowLocked() float64 { return max(l.window, 1) }

func (l *SwapLimiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if len(l.waiters) == 0 && float64(l.inflight) < l.windowLocked() {
		l.inflight++
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i:i], l.waiters[i+1:]...)
				l.mu.Unlock()
				return ctx.Err()
			}
		}
		l.mu.Unlock()
		l.release(0, true) // granted meanwhile: hand the slot on
		return ctx.Err()
	}
}

// release frees a slot. took is how long the dial took, zero when no dial
// was made; ok says whether it succeeded.
func (l *SwapLimiter) release(took time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if l.adaptive {
		now := time.Now
		if l.now != nil {
			now = l.now
		}
		l.adapt(now(), took, ok)
	}
	for len(l.waiters) > 0 && float64(l.inflight) < l.windowLocked() {
		close(l.waiters[0])
		l.waiters = l.waiters[1:]
		l.inflight++
	}
}

// adapt takes one dial's time into account. l.mu is held.
func (l *SwapLimiter) adapt(now time.Time, took time.Duration, ok bool) {
	if l.inflight == 0 && len(l.waiters) == 0 {
		// Idle: the next burst meets other load; start it afresh rather
		// than at a window that was right for this one.
		l.window, l.fastest, l.avg, l.lastCut = l.initial, 0, 0, time.Time{}
		return
	}
	if took <= 0 {
		return // no dial was made
	}
	if l.fastest == 0 || took < l.fastest {
		l.fastest = took
	}
	if l.avg == 0 {
		l.avg = took
	} else {
		l.avg += (took - l.avg) / 8
	}
	slow := max(l.target, 2*l.fastest)
	switch {
	case !ok || l.avg > slow:
		// Dials that finish within one dial time of a cut started before
		// it: they tell nothing new.
		if now.Sub(l.lastCut) > l.avg {
			f := 0.75
			if !ok {
				f = 0.5
			}
			l.window = max(l.window*f, minSwapWindow)
			l.lastCut = now
		}
	case l.avg < slow*3/4 && (len(l.waiters) > 0 || float64(l.inflight+1) >= l.window):
		// Fast, and the window was full: a wider one may go faster.
		l.window = min(l.window+1, maxSwapWindow)
	}
}
