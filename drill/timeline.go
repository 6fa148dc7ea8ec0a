package drill

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/report"
)

// sampleEvery is the timeline's resolution.
const sampleEvery = 250 * time.Millisecond

// view classifies what the servers see: connections presenting a member's
// old leaf, a member's new leaf, or anything else (harness, probes).
type view struct {
	old, new map[string]int // cert_sha256 -> member index
	members  int
}

// count reads every server's connection list in-process (the same data
// /connz?auth=true serves, without the HTTP round trip) and classifies it.
// onNew[i] is true when member i has a connection on new material and none
// on old.
//
// out is the messages the servers have sent to member connections still
// open: with worker processes it stands in for the members' own count.
func (v *view) count(servers []*embedded.Server) (old, new, other int, onNew []bool, out int64) {
	hasOld := make([]bool, v.members)
	hasNew := make([]bool, v.members)
	for _, s := range servers {
		ns := s.NATS
		if ns == nil {
			continue
		}
		cz, err := ns.Connz(&server.ConnzOptions{Username: true, Limit: 1 << 20})
		if err != nil {
			continue
		}
		for _, c := range cz.Conns {
			fp := ""
			if len(c.TLSPeerCerts) > 0 {
				fp = c.TLSPeerCerts[0].CertSha256
			}
			if i, ok := v.old[fp]; ok {
				old++
				hasOld[i] = true
				out += c.OutMsgs
			} else if i, ok := v.new[fp]; ok {
				new++
				hasNew[i] = true
				out += c.OutMsgs
			} else {
				other++
			}
		}
	}
	onNew = make([]bool, v.members)
	for i := range onNew {
		onNew[i] = hasNew[i] && !hasOld[i]
	}
	return old, new, other, onNew, out
}

// sampler records the timeline until its context ends.
type sampler struct {
	start    time.Time
	servers  []*embedded.Server
	view     *view
	received func() int64 // deliveries to members so far; nil: the servers' count
	failures func() int64 // TLS/auth failures and failed requests so far
	lost     func() int64 // messages lost so far, for the live display
	progress Progress

	mu      sync.Mutex
	samples []report.Sample
	onNewAt []time.Time // when each member was first seen on new material only
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	// The rate is taken over the last second, not the last sample: at a
	// low publish rate a single sample often holds no message at all.
	type point struct {
		t    time.Time
		recv int64
	}
	var recent []point
	lastFail := s.failures()
	var lastOut, outTotal int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			old, nw, other, onNew, out := s.view.count(s.servers)
			var recv int64
			if s.received != nil {
				recv = s.received()
			} else {
				// Connections come and go (swaps, restarts): count only
				// growth.
				outTotal += max(0, out-lastOut)
				lastOut = out
				recv = outTotal
			}
			fail := s.failures()
			recent = append(recent, point{now, recv})
			for len(recent) > 2 && now.Sub(recent[1].t) >= time.Second {
				recent = recent[1:]
			}
			var rate float64
			if len(recent) > 1 {
				rate = float64(recv-recent[0].recv) / now.Sub(recent[0].t).Seconds()
			}
			smp := report.Sample{
				T:   now.Sub(s.start).Milliseconds(),
				Old: old, New: nw, Unknown: other,
				MsgRate:  rate,
				Failures: fail - lastFail,
			}
			lastFail = fail
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			if s.onNewAt == nil {
				s.onNewAt = make([]time.Time, len(onNew))
			}
			for i, ok := range onNew {
				if ok && s.onNewAt[i].IsZero() {
					s.onNewAt[i] = now
				}
			}
			s.mu.Unlock()
			if s.progress != nil {
				s.progress(Event{Time: now, Elapsed: now.Sub(s.start), Kind: EventSample, Sample: &smp, Lost: s.lost()})
			}
		}
	}
}

// firstOnNew is when member i was first seen on new material only; zero
// when never.
func (s *sampler) firstOnNew(i int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < len(s.onNewAt) {
		return s.onNewAt[i]
	}
	return time.Time{}
}

func (s *sampler) timeline() []report.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]report.Sample(nil), s.samples...)
}
