// Package seqledger accounts for a stream of numbered messages: the 8-byte
// sequence number each message carries, and a ledger of the numbers a
// receiver got, from which losses, duplicates and reordering are counted
// exactly afterwards instead of estimated from rates.
//
// The drill's publisher numbers its fan-out messages with Append; the
// drill's in-process members and examples/worker (with WORKER_REPORT) read
// them with Decode and Record them, and a worker hands its ledger to the
// drill as a Snapshot that the drill Merges:
//
//	var l seqledger.Ledger
//	if seq, ok := seqledger.Decode(msg.Data); ok {
//		l.Record(seq)
//	}
//	t := l.Count(from, to) // t.Lost, t.Duplicates, t.OutOfOrder
package seqledger

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// MaxSeq is the highest sequence number Decode accepts. The ledger is a
// bitmap as long as the highest number seen, so a stray payload that
// decodes to a huge number must not reach it: MaxSeq bounds the bitmap to
// 32 MiB, some 268 million messages.
const MaxSeq = 1 << 28

// Append appends seq in the wire format: 8 bytes, big-endian.
func Append(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// Decode reads a message's sequence number: exactly 8 bytes, big-endian,
// in [1, MaxSeq].
func Decode(data []byte) (uint64, bool) {
	if len(data) != 8 {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(data)
	return seq, seq >= 1 && seq <= MaxSeq
}

// Ledger records which numbered messages one receiver got, as a bitmap.
// The zero value is empty and ready. It is safe for concurrent use: during
// a swap a receiver gets messages on two connections at once.
type Ledger struct {
	mu         sync.Mutex
	seen       []uint64 // bit s set: message s was received at least once
	received   int64    // deliveries, duplicates included
	duplicates int64
	outOfOrder int64
	maxSeen    uint64
}

// Record notes the delivery of message seq (seq >= 1).
func (l *Ledger) Record(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received++
	if !l.setLocked(seq) {
		l.duplicates++
		return
	}
	if seq < l.maxSeen {
		l.outOfOrder++
	}
	l.maxSeen = max(l.maxSeen, seq)
}

// setLocked sets seq's bit and reports whether it was clear.
func (l *Ledger) setLocked(seq uint64) bool {
	w, b := seq/64, seq%64
	for uint64(len(l.seen)) <= w {
		l.seen = append(l.seen, make([]uint64, len(l.seen)+1)...)
	}
	if l.seen[w]&(1<<b) != 0 {
		return false
	}
	l.seen[w] |= 1 << b
	return true
}

// Tally is what a ledger says about one window of sequence numbers.
type Tally struct {
	Expected   int64
	Received   int64 // distinct messages of the window received
	Lost       int64
	Duplicates int64 // over the whole ledger, not only the window
	OutOfOrder int64 // likewise
	// LongestRun is the longest run of consecutive lost messages.
	LongestRun int64
}

// Count tallies the window [from, to]: every message published in it was
// expected, so what is missing from the bitmap was lost.
func (l *Ledger) Count(from, to uint64) Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := Tally{Duplicates: l.duplicates, OutOfOrder: l.outOfOrder}
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
		if l.hasLocked(s) {
			t.Received++
			run = 0
			continue
		}
		run++
		t.LongestRun = max(t.LongestRun, run)
	}
	t.Lost = t.Expected - t.Received
	return t
}

// Distinct is how many different messages were received, in any window.
func (l *Ledger) Distinct() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int
	for _, w := range l.seen {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// Deliveries is every delivery so far, duplicates included.
func (l *Ledger) Deliveries() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.received
}

// Max is the highest sequence number received.
func (l *Ledger) Max() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxSeen
}

func (l *Ledger) hasLocked(s uint64) bool {
	w := s / 64
	return w < uint64(len(l.seen)) && l.seen[w]&(1<<(s%64)) != 0
}

// Range is a run of consecutive sequence numbers, first and last
// included; in JSON [first, last].
type Range [2]uint64

// Snapshot is a ledger in a form that travels: the set of numbers received
// as ranges, in order, and the counts.
type Snapshot struct {
	Received   []Range `json:"received"`
	Deliveries int64   `json:"deliveries"`
	Duplicates int64   `json:"duplicates"`
	OutOfOrder int64   `json:"out_of_order"`
}

// Snapshot returns the ledger as it is now.
func (l *Ledger) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Snapshot{Received: []Range{}, Deliveries: l.received, Duplicates: l.duplicates, OutOfOrder: l.outOfOrder}
	for seq := uint64(1); seq <= l.maxSeen; seq++ {
		if !l.hasLocked(seq) {
			continue
		}
		if n := len(s.Received); n > 0 && s.Received[n-1][1] == seq-1 {
			s.Received[n-1][1] = seq
		} else {
			s.Received = append(s.Received, Range{seq, seq})
		}
	}
	return s
}

// Merge adds another ledger's snapshot, as when a receiver ran as several
// processes one after the other: a number both hold is one more
// duplicate. Order is judged within each snapshot only; the order across
// them is not known.
func (l *Ledger) Merge(s Snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received += s.Deliveries
	l.duplicates += s.Duplicates
	l.outOfOrder += s.OutOfOrder
	for _, r := range s.Received {
		for seq := max(r[0], 1); seq <= r[1] && seq <= MaxSeq; seq++ {
			if !l.setLocked(seq) {
				l.duplicates++
			}
			l.maxSeen = max(l.maxSeen, seq)
		}
	}
}
