package drill

import (
	"math/bits"
	"sync"
)

// ledger records which numbered fan-out messages one member received, as a
// bitmap over the run, so that losses are counted exactly afterwards
// instead of estimated from rates. It is safe for concurrent use: during a
// swap a member receives on two connections at once.
type ledger struct {
	mu         sync.Mutex
	seen       []uint64 // bit s set: message s was received at least once
	received   int64    // deliveries, duplicates included
	duplicates int64
	outOfOrder int64
	maxSeen    uint64
}

// record notes the delivery of message seq (seq >= 1).
func (l *ledger) record(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received++
	w, b := seq/64, seq%64
	for uint64(len(l.seen)) <= w {
		l.seen = append(l.seen, make([]uint64, len(l.seen)+1)...)
	}
	if l.seen[w]&(1<<b) != 0 {
		l.duplicates++
		return
	}
	l.seen[w] |= 1 << b
	if seq < l.maxSeen {
		l.outOfOrder++
	}
	if seq > l.maxSeen {
		l.maxSeen = seq
	}
}

// tally is what a ledger says about one window of sequence numbers.
type tally struct {
	Expected   int64
	Received   int64 // distinct messages of the window received
	Lost       int64
	Duplicates int64
	OutOfOrder int64
	// LongestRun is the longest run of consecutive lost messages.
	LongestRun int64
}

// count tallies the window [from, to]: every message published in it was
// expected, so what is missing from the bitmap was lost.
func (l *ledger) count(from, to uint64) tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{Duplicates: l.duplicates, OutOfOrder: l.outOfOrder}
	if from == 0 {
		from = 1
	}
	if to < from {
		return t
	}
	t.Expected = int64(to - from + 1)
	var run int64
	for s := from; s <= to; s++ {
		if s%64 == 0 && s+63 <= to && s/64 < uint64(len(l.seen)) && l.seen[s/64] == ^uint64(0) {
			t.Received += 64
			run = 0
			s += 63
			continue
		}
		if l.has(s) {
			t.Received++
			run = 0
			continue
		}
		run++
		if run > t.LongestRun {
			t.LongestRun = run
		}
	}
	t.Lost = t.Expected - t.Received
	return t
}

// distinct is how many different messages were received, in any window.
func (l *ledger) distinct() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int
	for _, w := range l.seen {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// deliveries is every delivery so far, duplicates included.
func (l *ledger) deliveries() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.received
}

func (l *ledger) has(s uint64) bool {
	w := s / 64
	return w < uint64(len(l.seen)) && l.seen[w]&(1<<(s%64)) != 0
}

// max is the highest sequence number received.
func (l *ledger) max() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxSeen
}
