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
func (v *view) count(servers []*embedded.Server) (old, new, other int, onNew []bool) {
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
			} else if i, ok := v.new[fp]; ok {
				new++
				hasNew[i] = true
			} else {
				other++
			}
		}
	}
	onNew = make([]bool, v.members)
	for i := range onNew {
		onNew[i] = hasNew[i] && !hasOld[i]
	}
	return old, new, other, onNew
}

// sampler records the timeline until its context ends.
type sampler struct {
	start    time.Time
	servers  []*embedded.Server
	view     *view
	received func() int64 // deliveries to members so far
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
	lastT, lastRecv, lastFail := time.Now(), s.received(), s.failures()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			old, nw, other, onNew := s.view.count(s.servers)
			recv, fail := s.received(), s.failures()
			smp := report.Sample{
				T:   now.Sub(s.start).Milliseconds(),
				Old: old, New: nw, Unknown: other,
				MsgRate:  float64(recv-lastRecv) / now.Sub(lastT).Seconds(),
				Failures: fail - lastFail,
			}
			lastT, lastRecv, lastFail = now, recv, fail
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
