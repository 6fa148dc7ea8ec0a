package report_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/natscert/natscert/report"
)

// syntheticReport builds a realistic drill report: 3 servers, 100 members
// in 4 waves, 60 timeline samples one second apart, 7 phases. With ok
// false, wave 3 loses messages and one server keeps accepting the old
// certificate.
func syntheticReport(ok bool) *report.Report {
	rng := rand.New(rand.NewPCG(7, 11))
	start := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	at := func(ms int64) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	servers := []string{"nats-0", "nats-1", "nats-2"}

	const members, waves = 100, 4
	r := &report.Report{
		Kind:       "drill",
		Title:      "Drill: client CA rotation, 100 members, swap",
		StartedAt:  start,
		FinishedAt: at(59_400),
		Strategy:   "swap",
		Setup: map[string]any{
			"clients": 100.0, "servers": 3.0, "rate_per_client": 10.0, "waves": 4.0,
			"seed": 7.0, "strategy": "swap", "tls": "1.3", "settle": "2s",
		},
		OK:              ok,
		OldCertRejected: ok,
	}

	type span struct {
		name     string
		from, to int64
		observed string
	}
	phases := []span{
		{"preflight", 0, 3_200, "3 servers answered /varz and /connz; 100/100 members present on old material; budget 44 s fits the 120 s SLA"},
		{"trust both", 3_200, 9_800, "config_load_time changed on 3/3 servers; probe with new client certificate accepted on every server"},
		{"waves", 9_800, 42_600, "4 waves, every gate passed: members present the new fingerprint, settled 2 s"},
		{"converged", 42_600, 45_100, "100/100 members on new material on every server, none on old, stable for 2 s"},
		{"revoke", 45_100, 50_300, "servers trust only the new CA; reload observed on 3/3; no straggler to kick"},
		{"proof", 50_300, 53_900, "old probe rejected and new probe PONG on every server in the same step; 0 old fingerprints"},
		{"report", 53_900, 59_400, "timeline, per-member gaps and budget written"},
	}
	for _, p := range phases {
		r.Phases = append(r.Phases, report.Phase{Name: p.name, Start: at(p.from), End: at(p.to),
			DurationMS: p.to - p.from, OK: true, Observed: p.observed})
	}

	// Waves: 25 members each, 8 s apart from the start of the waves phase.
	waveStart := func(i int) int64 { return 10_400 + int64(i)*8_000 }
	for w := range waves {
		var names []string
		for m := w * members / waves; m < (w+1)*members/waves; m++ {
			names = append(names, memberName(m))
		}
		from := waveStart(w)
		r.Waves = append(r.Waves, report.Wave{Index: w + 1, Workload: "deploy/control-plane", Members: names,
			Start: at(from), End: at(from + 7_400), DurationMS: 7_400, OK: true,
			Gate: fmt.Sprintf("25/25 members present the new fingerprint; settled 2 s; %d TLS failures (limit 10)", w%2)})
	}

	// Timeline: each wave moves its members over ~4 s; with swap the new
	// connection is made before the old one is drained.
	onNew := func(t int64) (old, nw int) {
		for w := range waves {
			from := waveStart(w)
			done := 25 * clamp01(float64(t-from)/4000)
			drained := 25 * clamp01(float64(t-from-700)/4000)
			nw += int(math.Round(done))
			old += 25 - int(math.Round(drained))
		}
		return old, nw
	}
	for i := range 60 {
		t := int64(i) * 1000
		old, nw := onNew(t)
		rate := 1000 + 30*math.Sin(float64(i)/3) + float64(rng.IntN(20))
		var fails int64
		if t >= 10_000 && t < 42_000 && (t/1000)%8 == 3 {
			fails = int64(1 + rng.IntN(3))
			rate -= 60
		}
		if t == 46_000 {
			fails = 2 // the old-certificate probes of revoke
		}
		r.Timeline = append(r.Timeline, report.Sample{T: t, Old: old, New: nw, MsgRate: math.Round(rate*10) / 10, Failures: fails})
	}

	for m := range members {
		gap := int64(4 + rng.IntN(30))
		mem := report.Member{
			Name: memberName(m), Server: servers[m%len(servers)], GapMS: gap,
			ReconnectAttempts: 1, OnNew: true,
			OldCertSHA256: fmt.Sprintf("%064x", m+1), NewCertSHA256: fmt.Sprintf("%064x", m+1001),
		}
		switch m {
		case 17:
			mem.GapMS, mem.TLSFailures, mem.ReconnectAttempts = 1_840, 3, 4
		case 42:
			mem.GapMS, mem.Duplicates, mem.ReconnectAttempts = 620, 2, 2
		case 63:
			mem.GapMS, mem.OutOfOrder, mem.TLSFailures = 410, 1, 1
		}
		r.Members = append(r.Members, mem)
		r.Duplicates += mem.Duplicates
		r.OutOfOrder += mem.OutOfOrder
	}

	r.Budget = &report.Budget{PredictedMS: 44_000, WorstCaseMS: 61_000, ActualMS: 59_400, SLAMS: 120_000, Fits: true}
	r.Convergence = &report.Convergence{MS: 32_800, FloorMS: 1_250, HandshakesPerSecond: 80}
	r.Proof = &report.Proof{OK: ok}
	for _, s := range servers {
		r.Proof.Servers = append(r.Proof.Servers, report.ServerProof{Server: s, OldRejected: true, NewAccepted: true,
			Detail: "old probe: remote error: tls: unknown certificate authority"})
	}

	if !ok {
		r.Phases[5].OK = false
		r.Phases[5].Observed = "nats-2 accepted the old probe: its ca_file still holds the old CA"
		r.Waves[2].OK = false
		r.Waves[2].Gate = "gate failed: 3 members lost messages during the swap"
		r.Proof.Servers[2].OldRejected = false
		r.Proof.Servers[2].OldFingerprints = 1
		r.Proof.Servers[2].Detail = "old probe completed CONNECT/PING/PONG"
		for _, m := range []int{51, 56, 70} {
			r.Members[m].Lost = report.Lost{Messages: int64(3 + m%5), Requests: int64(m % 2)}
			r.Lost.Messages += r.Members[m].Lost.Messages
			r.Lost.Requests += r.Members[m].Lost.Requests
		}
		r.Members[88].OnNew = false
		r.Broken = []string{
			"old certificate accepted on nats-2",
			fmt.Sprintf("%d messages and %d request lost in wave 3", r.Lost.Messages, r.Lost.Requests),
			"member cp-088 still presents old material",
		}
	}
	return r
}

func memberName(i int) string { return fmt.Sprintf("cp-%03d", i) }

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }
