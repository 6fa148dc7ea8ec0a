package drill

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/natscert/natscert/pki"
	"github.com/natscert/natscert/report"
	"github.com/natscert/natscert/rotation"
)

// Result is what a drill measured. Report holds what report.json carries
// for scripts; the other fields add what the summary prints.
type Result struct {
	Config   Config
	Dir      string
	Duration time.Duration
	Floor    Floor
	// Rotation is the rotation package's own record; RotationErr its error.
	Rotation    *rotation.Result
	RotationErr error
	Report      *report.Report

	Messages MessageTally
	Requests RequestTally
	// Convergence is from the first delivery of new material to the last
	// member seen on it by the servers, waves and pauses included.
	Convergence time.Duration
	// Moving is the sum over waves of the time from the wave's first
	// delivery to its last member seen on new material: the time the
	// fleet actually spent moving, comparable with the floor.
	Moving time.Duration
	// ServerCerts counts the servers' own certificates renewed.
	ServerCerts ServerCertTally
}

// ServerCertTally counts the servers whose renewed leaf the proof's probe
// was shown: the leaf the rotation minted, not the one the server started
// with.
type ServerCertTally struct {
	Servers, Renewed int
	// NotRenewed names the servers that presented anything else.
	NotRenewed []string
}

// MessageTally counts the fan-out stream over the loss window.
type MessageTally struct {
	// Published is the numbered messages in the window; Expected is
	// Published times the members.
	Published, Expected  int64
	Lost                 int64
	Duplicates           int64
	OutOfOrder           int64
	MembersWithLoss      int
	WindowFrom, WindowTo uint64
}

// RequestTally counts the request/reply traffic.
type RequestTally struct {
	Sent, Answered        int64
	TimedOut, NoResponder int64
	Other                 int64
	// Attributed is how many failed requests a member had answered (the
	// reply was lost on its way back); the rest reached no member.
	Attributed int64
}

// Failed is every request that did not get its reply.
func (r RequestTally) Failed() int64 { return r.TimedOut + r.NoResponder + r.Other }

// OK reports whether every promise of the strategy held and the proof
// passed.
func (r *Result) OK() bool { return r.Report != nil && r.Report.OK }

// account tallies the members' ledgers over [from, to], attributes failed
// requests, and fills the report.
func (d *run) account(res *Result, from, to uint64, rotStart, rotEnd time.Time) {
	cfg := d.cfg
	rep := &report.Report{
		Kind:       "drill",
		Title:      fmt.Sprintf("natscert drill: %s, %d clients, %d servers", cfg.Strategy, cfg.Clients, cfg.Servers),
		StartedAt:  d.start,
		FinishedAt: time.Now(),
		Strategy:   string(cfg.Strategy),
		Setup: map[string]any{
			"clients": cfg.Clients, "servers": cfg.Servers, "rate": cfg.Rate, "request_rate": cfg.RequestRate,
			"waves": cfg.Waves, "seed": cfg.Seed, "processes": cfg.Processes,
			"steady_ms": cfg.Steady.Milliseconds(), "pause_ms": cfg.Pause.Milliseconds(),
			"publish_interval_ms": float64(cfg.publishInterval().Microseconds()) / 1000,
			"request_timeout_ms":  cfg.RequestTimeout.Milliseconds(),
			"loss_accounting":     "exact: a bitmap of sequence numbers per member",
		},
	}
	if cfg.Processes {
		rep.Setup["loss_accounting"] = d.processAccounting()
	}
	res.Report = rep

	// Requests: a failed request a member answered is that member's loss.
	rq := RequestTally{
		Sent: d.req.sent.Load(), Answered: d.req.ok.Load(),
		TimedOut: d.req.timedOut.Load(), NoResponder: d.req.noResponder.Load(), Other: d.req.otherErr.Load(),
	}
	perMember := make([]int64, len(d.members))
	d.req.mu.Lock()
	for _, id := range d.req.failed {
		if i, ok := d.answers.who(id); ok {
			perMember[i]++
			rq.Attributed++
		}
	}
	d.req.mu.Unlock()
	res.Requests = rq

	// Messages: exact, from every member's bitmap.
	mt := MessageTally{WindowFrom: from, WindowTo: to}
	if to >= from {
		mt.Published = int64(to - from + 1)
	}
	onNew := map[string]bool{}
	if res.Rotation != nil {
		for _, m := range res.Rotation.Members {
			onNew[m.Name] = m.OnNew
		}
	}
	interval := cfg.publishInterval()
	for _, m := range d.members {
		t := m.ledger.Count(from, to)
		m.mu.Lock()
		// A worker that died logged how many messages it received, not
		// which: at best they were all in the window and none a duplicate.
		t.Lost = max(0, t.Lost-m.unreportedReceived)
		// The gap: the longest stretch of the stream the member missed
		// (resolution: one publish interval), or for a restart the time
		// from stop to subscribed again, whichever is longer.
		gap := max(time.Duration(t.LongestRun)*interval, m.restartGap)
		m.mu.Unlock()
		mt.Expected += t.Expected
		mt.Lost += t.Lost
		mt.Duplicates += t.Duplicates
		mt.OutOfOrder += t.OutOfOrder
		if t.Lost > 0 {
			mt.MembersWithLoss++
		}
		rep.Members = append(rep.Members, report.Member{
			Name:              m.name,
			Server:            d.setup.cluster.Servers[m.idx%len(d.setup.cluster.Servers)].Name,
			GapMS:             gap.Milliseconds(),
			Lost:              report.Lost{Messages: t.Lost, Requests: perMember[m.idx]},
			Duplicates:        t.Duplicates,
			OutOfOrder:        t.OutOfOrder,
			TLSFailures:       m.tlsFailures.Load(),
			ReconnectAttempts: m.reconnectAttempts(),
			OldCertSHA256:     pki.CertSHA256(m.old.Cert),
			NewCertSHA256:     pki.CertSHA256(m.new.Cert),
			OnNew:             onNew[m.name],
		})
	}
	sort.Slice(rep.Members, func(i, j int) bool { return rep.Members[i].Name < rep.Members[j].Name })
	res.Messages = mt
	rep.Lost = report.Lost{Messages: mt.Lost, Requests: rq.Failed()}
	rep.Duplicates, rep.OutOfOrder = mt.Duplicates, mt.OutOfOrder
	rep.Timeline = d.sampler.timeline()

	// Phases: the drill's own steps around the rotation's phases.
	for _, sp := range d.phases {
		if sp.name == "steady after" || sp.name == "drain" {
			continue
		}
		rep.Phases = append(rep.Phases, phase("drill: "+sp.name, sp.start, sp.end, true, sp.observed))
	}
	if rot := res.Rotation; rot != nil {
		rep.Phases = append(rep.Phases, report.RotationPhases(rot)...)
		rep.Waves = report.RotationWaves(rot)
		rep.Proof, rep.OldCertRejected = report.RotationProof(rot)
		if rep.Proof != nil {
			// Say, per server, whether it presents its renewed leaf.
			for i, p := range rot.Proof {
				sp := &rep.Proof.Servers[i]
				sp.Detail += fmt.Sprintf("; server presents %s (%s; started with %s)", short(p.New.ServerCertSHA256),
					map[bool]string{true: "renewed", false: "NOT renewed"}[d.renewed(p)], short(d.setup.serverCerts[p.Server]))
			}
		}
		rep.Budget = report.RotationBudget(rot)
	}
	for _, sp := range d.phases {
		if sp.name == "steady after" || sp.name == "drain" {
			rep.Phases = append(rep.Phases, phase("drill: "+sp.name, sp.start, sp.end, true, sp.observed))
		}
	}

	// Convergence, seen by the servers, against the floor.
	res.Convergence, res.Moving = d.convergence(res.Rotation)
	rep.Convergence = &report.Convergence{
		MS:                  res.Convergence.Milliseconds(),
		FloorMS:             res.Floor.Duration.Milliseconds(),
		HandshakesPerSecond: res.Floor.PerSec,
	}

	rep.Broken = d.promises(res)
	rep.OK = len(rep.Broken) == 0
}

// processAccounting says how the members' worker processes were counted:
// exactly from their reports, unless some died without one.
func (d *run) processAccounting() string {
	const exact = "exact: a bitmap of sequence numbers per member, from the report each worker process writes at exit (WORKER_REPORT); TLS/auth failures and attempts from its bus status"
	var runs, members int
	for _, m := range d.members {
		m.mu.Lock()
		if m.unreported > 0 {
			runs += m.unreported
			members++
		}
		m.mu.Unlock()
	}
	if runs == 0 {
		return exact
	}
	return fmt.Sprintf("%s; except %d worker process(es) of %d member(s) that died without a report: for those, lost is a lower bound "+
		"from the count in their log (which messages is unknown), TLS/auth failures are from their log lines", exact, runs, members)
}

// String says how many servers were renewed, and which were not, as the
// summary and the progress show it.
func (t ServerCertTally) String() string {
	if len(t.NotRenewed) > 0 {
		return fmt.Sprintf("renewed %d/%d; old or unexpected fingerprint on %s", t.Renewed, t.Servers, strings.Join(t.NotRenewed, " "))
	}
	return fmt.Sprintf("renewed %d/%d, new fingerprint observed", t.Renewed, t.Servers)
}

// renewed reports whether the proof's probe was shown the server's renewed
// leaf: the one the rotation minted, not the one the server started with.
func (d *run) renewed(p rotation.ServerProof) bool {
	return p.ServerCertSHA256 != "" && p.New.ServerCertSHA256 == p.ServerCertSHA256 &&
		p.ServerCertSHA256 != d.setup.serverCerts[p.Server]
}

// serverCertTally counts the servers renewed according to the proof.
func (d *run) serverCertTally(rot *rotation.Result) ServerCertTally {
	var t ServerCertTally
	if rot == nil {
		return t
	}
	for _, p := range rot.Proof {
		t.Servers++
		if d.renewed(p) {
			t.Renewed++
		} else {
			t.NotRenewed = append(t.NotRenewed, p.Server)
		}
	}
	return t
}

func phase(name string, start, end time.Time, ok bool, observed string) report.Phase {
	return report.Phase{Name: name, Start: start, End: end, DurationMS: end.Sub(start).Milliseconds(), OK: ok, Observed: observed}
}

// convergence works out, from deliveries and the servers' view, the time
// from the first delivery to the last member on new material, and the sum
// of the waves' own moving times.
func (d *run) convergence(rot *rotation.Result) (total, moving time.Duration) {
	idx := map[string]int{}
	for _, m := range d.members {
		idx[m.name] = m.idx
	}
	d.target.mu.Lock()
	defer d.target.mu.Unlock()
	var first, last time.Time
	if rot == nil {
		return 0, 0
	}
	for _, w := range rot.Waves {
		var wFirst, wLast time.Time
		for _, name := range w.Members {
			dt, ok := d.target.delivered[name]
			if !ok {
				continue
			}
			if wFirst.IsZero() || dt.Before(wFirst) {
				wFirst = dt
			}
			at := d.sampler.firstOnNew(idx[name])
			if at.After(wLast) {
				wLast = at
			}
		}
		if wFirst.IsZero() || wLast.IsZero() {
			continue
		}
		moving += max(0, wLast.Sub(wFirst))
		if first.IsZero() || wFirst.Before(first) {
			first = wFirst
		}
		if wLast.After(last) {
			last = wLast
		}
	}
	if first.IsZero() || last.IsZero() {
		return 0, moving
	}
	return last.Sub(first), moving
}

// promises lists what did not hold. Every strategy promises that the
// rotation completed (no member left on old material) and that the proof
// passed; swap also promises that nothing was lost.
func (d *run) promises(res *Result) []string {
	var broken []string
	rot := res.Rotation
	switch {
	case res.RotationErr != nil:
		broken = append(broken, "rotation did not complete: "+res.RotationErr.Error())
	case rot == nil || !rot.OK:
		broken = append(broken, "rotation did not complete")
	}
	if rot != nil {
		var left []string
		for _, m := range rot.Members {
			if !m.OnNew {
				left = append(left, m.Name)
			}
		}
		if len(left) > 0 {
			broken = append(broken, fmt.Sprintf("%d member(s) not on new material: %s", len(left), clip(strings.Join(left, " "), 200)))
		}
	}
	if rep := res.Report; rep.Proof == nil {
		broken = append(broken, "proof did not run")
	} else if !rep.Proof.OK {
		broken = append(broken, "proof failed: old certificate not rejected, new not accepted, or old connections left")
	}
	if sc := res.ServerCerts; sc.Renewed < sc.Servers {
		broken = append(broken, "server certificates "+sc.String())
	}
	if d.cfg.Strategy == StrategySwap {
		if res.Messages.Lost > 0 {
			broken = append(broken, fmt.Sprintf("swap promises zero lost messages: %d lost by %d member(s)", res.Messages.Lost, res.Messages.MembersWithLoss))
		}
		if f := res.Requests.Failed(); f > 0 {
			broken = append(broken, fmt.Sprintf("swap promises zero failed requests: %d failed (%d timed out, %d no responders)", f, res.Requests.TimedOut, res.Requests.NoResponder))
		}
	}
	if n := d.pub.failed.Load(); n > 0 {
		broken = append(broken, fmt.Sprintf("the drill's publisher could not send %d message(s): the loss count is incomplete", n))
	}
	return broken
}

func (r *Result) verdictLine() string {
	if r.Report == nil {
		return "no report"
	}
	if r.Report.OK && r.Config.Strategy == StrategySwap {
		return "every promise of swap held: nothing lost, every member on new material, server certificates renewed, old certificate rejected on every server"
	}
	if r.Report.OK {
		return fmt.Sprintf("every promise of %s held: every member on new material, server certificates renewed, old certificate rejected on every server; measured, not promised: %d messages lost, %d requests failed",
			r.Config.Strategy, r.Messages.Lost, r.Requests.Failed())
	}
	return "promise broken: " + strings.Join(r.Report.Broken, "; ")
}

// WriteSummary prints the drill's figures as a table.
func (r *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rep := r.Report
	p := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, args...)...)
	}
	fmt.Fprintf(tw, "natscert drill: %s strategy, %d clients, %d servers, %d waves\n", r.Config.Strategy, r.Config.Clients, r.Config.Servers, r.Config.Waves)
	p("duration", "%v", r.Duration.Round(100*time.Millisecond))
	p("messages", "%d published x %d members = %d expected in the window", r.Messages.Published, r.Config.Clients, r.Messages.Expected)
	p("lost messages", "%d (%d member(s) lost any)", r.Messages.Lost, r.Messages.MembersWithLoss)
	p("duplicates", "%d", r.Messages.Duplicates)
	p("out of order", "%d", r.Messages.OutOfOrder)
	p("requests", "%d sent, %d answered", r.Requests.Sent, r.Requests.Answered)
	p("failed requests", "%d (%d timed out, %d no responders, %d other; %d answered by a member but the reply lost)",
		r.Requests.Failed(), r.Requests.TimedOut, r.Requests.NoResponder, r.Requests.Other, r.Requests.Attributed)
	var tlsFail, attempts, maxGap int64
	for _, m := range rep.Members {
		tlsFail += m.TLSFailures
		attempts += m.ReconnectAttempts
		maxGap = max(maxGap, m.GapMS)
	}
	p("TLS/auth failures", "%d", tlsFail)
	p("reconnect attempts", "%d", attempts)
	p("longest member gap", "%d ms", maxGap)
	p("handshake floor", "%.0f mTLS connects/s: %d members need at least %v", r.Floor.PerSec, r.Config.Clients, r.Floor.Duration.Round(time.Millisecond))
	p("convergence", "%v from first delivery to last member on new (waves and pauses included)", r.Convergence.Round(time.Millisecond))
	p("moving time", "%v summed over waves (delivery to last member on new), %.1fx the floor", r.Moving.Round(time.Millisecond), ratio(r.Moving, r.Floor.Duration))
	if b := rep.Budget; b != nil {
		p("budget", "predicted %v for the waves (worst case %v), actual %v", ms(b.PredictedMS), ms(b.WorstCaseMS), ms(b.ActualMS))
	}
	for _, ph := range rep.Phases {
		mark := "ok"
		if !ph.OK {
			mark = "FAILED"
		}
		p("phase "+ph.Name, "%v %s", ms(ph.DurationMS), mark)
	}
	if rep.Proof != nil {
		for _, s := range rep.Proof.Servers {
			p("proof "+s.Server, "old rejected %v, new accepted %v, %d old connection(s) left", s.OldRejected, s.NewAccepted, s.OldFingerprints)
		}
	}
	if sc := r.ServerCerts; sc.Servers > 0 {
		p("server certificates", "%s", sc)
	}
	p("old_cert_rejected", "%v", rep.OldCertRejected)
	p("verdict", "%s", r.verdictLine())
	return tw.Flush()
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// short is the start of a fingerprint, as the rotation prints them.
func short(fp string) string {
	switch {
	case fp == "":
		return "nothing"
	case len(fp) > 12:
		return fp[:12]
	}
	return fp
}
