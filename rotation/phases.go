package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/natscert/natscert/pki"
)

// preflight loads and inspects the material, reads every server, finds
// every member, and checks the budget. It runs again on resume.
func (r *Runner) preflight(ctx context.Context) (string, error) {
	mat, err := loadMaterial(r.plan)
	if err != nil {
		return "", err
	}
	r.mat = mat
	for _, s := range r.servers {
		if h, ok := s.(*hostServer); ok {
			h.roots = mat.serverRoots
			h.certs = []tls.Certificate{mat.probeNew, mat.probeOld}
		}
	}
	est, err := r.plan.Estimate()
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.res.Budget = est
	r.mu.Unlock()
	if !est.Fits {
		return "", fmt.Errorf("rotation: %w: the budget (%s, worst case %s) exceeds the SLA %s", ErrPhaseFailed, est.Total, est.WorstTotal, est.SLA)
	}
	var notes []string
	for _, s := range r.servers {
		v, err := s.Varz(ctx)
		if err != nil {
			return "", fmt.Errorf("rotation: %w: server %s: %w", ErrIncomplete, s.Name(), err)
		}
		notes = append(notes, fmt.Sprintf("%s (%s) config loaded %s", s.Name(), v.ServerName, v.ConfigLoadTime.Format(time.RFC3339)))
	}
	// Members must be present, on old material or (resumed) new.
	timeout := or(r.plan.Timeouts.Converge, 60*time.Second) / 2
	deadline := time.Now().Add(timeout)
	var missing []string
	var onOld, onNew int
	for {
		v := r.observe(ctx)
		if err := v.err(); err != nil {
			return "", err
		}
		missing, onOld, onNew = nil, 0, 0
		for _, m := range mat.members {
			mv := v.of(m)
			switch {
			case mv.onNew(m):
				onNew++
			case len(mv.Old)+len(mv.New) >= m.Replicas:
				onOld++
			default:
				missing = append(missing, fmt.Sprintf("%s (%s, want %d)", m.Name, mv, m.Replicas))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, r.poll)
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("rotation: %w: expected members not present: %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	obs := fmt.Sprintf("%d server(s) readable: %s; %d member(s) present (%d on old, %d on new); budget %s (worst case %s)",
		len(r.servers), strings.Join(notes, "; "), len(mat.members), onOld, onNew, est.Total, est.WorstTotal)
	if est.SLA > 0 {
		obs += " within SLA " + est.SLA.String()
	}
	if len(mat.findings) > 0 {
		obs += "; material: " + strings.Join(mat.findings, "; ")
	}
	return obs, nil
}

// trustBoth makes every server trust the old and the new client CA and
// observes it: config_load_time changed, and probes under both CAs are
// accepted by every server.
func (r *Runner) trustBoth(ctx context.Context) (string, error) {
	bundle, err := pki.Bundle(r.mat.oldCA, r.mat.newCA)
	if err != nil {
		return "", fmt.Errorf("rotation: trust both: %w", err)
	}
	for _, s := range r.servers {
		if err := r.backupServerCA(ctx, s); err != nil {
			return "", err
		}
	}
	return r.setTrust(ctx, PhaseTrustBoth, bundle, map[string]bool{"old": true, "new": true})
}

// backupServerCA keeps a copy of a server's ca_file, once, for abort.
func (r *Runner) backupServerCA(ctx context.Context, s Server) error {
	path := r.serverBackup(s)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := s.ReadClientCA(ctx)
	if err != nil {
		return fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	if len(b) == 0 {
		b = r.mat.oldCA
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("rotation: backup: %w", err)
	}
	if err := pki.WriteFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("rotation: backup: %w", err)
	}
	return nil
}

func (r *Runner) serverBackup(s Server) string {
	return filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "ca_file.pem")
}

// setTrust writes bundle as every server's ca_file, reloads each in turn
// (stopping at the first that fails), and waits until every server shows a
// new config_load_time and answers the probes as want says (true:
// accepted). The old probe is only required to be accepted, never
// rejected, here: rejection is the proof's to observe.
func (r *Runner) setTrust(ctx context.Context, phase string, bundle []byte, want map[string]bool) (string, error) {
	before := map[string]time.Time{}
	for _, s := range r.servers {
		v, err := s.Varz(ctx)
		if err != nil {
			return "", fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
		}
		before[s.Name()] = v.ConfigLoadTime
	}
	for _, s := range r.servers {
		cur, err := s.ReadClientCA(ctx)
		if err != nil {
			return "", fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
		}
		// A nil bundle: the files were written already (abort restores
		// each server's own).
		if bundle != nil && !bytes.Equal(cur, bundle) {
			if err := s.WriteClientCA(ctx, bundle); err != nil {
				return "", fmt.Errorf("rotation: %w: %s: %w", ErrPhaseFailed, s.Name(), err)
			}
		}
		if err := s.Reload(ctx); err != nil {
			r.emit(Event{Kind: ServerReloaded, Phase: phase, Server: s.Name(), Detail: err.Error()})
			return "", fmt.Errorf("rotation: %w: reload of %s failed, nothing else touched: %w", ErrPhaseFailed, s.Name(), err)
		}
		r.emit(Event{Kind: ServerReloaded, Phase: phase, Server: s.Name(), OK: true})
	}
	timeout := or(r.plan.Timeouts.Reload, 30*time.Second)
	deadline := time.Now().Add(timeout)
	for {
		pending, notes, err := r.checkTrust(ctx, before, want)
		if err == nil && len(pending) == 0 {
			return strings.Join(notes, "; "), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return "", err
			}
			return "", fmt.Errorf("rotation: %w: not observed within %s: %s", ErrPhaseFailed, timeout, strings.Join(pending, "; "))
		}
		sleep(ctx, r.poll)
	}
}

// checkTrust observes each server once: its configuration reloaded since
// before, and the probes answered as wanted.
func (r *Runner) checkTrust(ctx context.Context, before map[string]time.Time, want map[string]bool) (pending, notes []string, err error) {
	for _, s := range r.servers {
		v, verr := s.Varz(ctx)
		if verr != nil {
			pending = append(pending, fmt.Sprintf("%s: %v", s.Name(), verr))
			continue
		}
		if !v.ConfigLoadTime.After(before[s.Name()]) {
			pending = append(pending, fmt.Sprintf("%s: config_load_time still %s (reload not taken)", s.Name(), v.ConfigLoadTime.Format(time.RFC3339Nano)))
			continue
		}
		note := fmt.Sprintf("%s: config_load_time %s", s.Name(), v.ConfigLoadTime.Format(time.RFC3339Nano))
		ok := true
		for _, which := range []string{"new", "old"} {
			if !want[which] {
				continue
			}
			pr := r.probe(ctx, s, which)
			if pr.Outcome != Accepted {
				pending = append(pending, fmt.Sprintf("%s: %s probe %s (%s)", s.Name(), which, pr.Outcome, pr.Detail))
				ok = false
				continue
			}
			note += ", " + which + " probe accepted"
		}
		if ok {
			notes = append(notes, note)
		}
	}
	return pending, notes, nil
}

// probe dials s with the old or new probe leaf.
func (r *Runner) probe(ctx context.Context, s Server, which string) ProbeResult {
	cert := r.mat.probeNew
	if which == "old" {
		cert = r.mat.probeOld
	}
	p := &Probe{Cert: cert, Roots: r.mat.serverRoots, Timeout: or(r.plan.Timeouts.Probe, 5*time.Second),
		User: r.plan.Material.Probe.User, Password: r.plan.Material.Probe.Password}
	res := p.Run(ctx, s.Name(), s.ClientURL())
	r.emit(Event{Kind: ProbeDone, Server: s.Name(), OK: res.Outcome == Accepted, Detail: which + ": " + string(res.Outcome) + ": " + res.Detail})
	return res
}

// waves rolls every workload, in parallel when the plan says so.
func (r *Runner) waves(ctx context.Context) (string, error) {
	ws := r.plan.Workloads
	var notes []string
	if !r.plan.Parallel {
		for i := range ws {
			n, err := r.workload(ctx, &ws[i])
			if err != nil {
				return "", err
			}
			notes = append(notes, n)
		}
		return strings.Join(notes, "; "), nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	out := make([]string, len(ws))
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = r.workload(ctx, &ws[i])
			if errs[i] != nil {
				cancel() // one workload stopping stops the others at their next step
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return "", err
		}
	}
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	return strings.Join(out, "; "), nil
}

func (r *Runner) membersOf(w *Workload) []*memberState {
	var ms []*memberState
	for _, m := range r.mat.members {
		if m.Workload == w.Name {
			ms = append(ms, m)
		}
	}
	return ms
}

// workload rolls one workload wave by wave.
func (r *Runner) workload(ctx context.Context, w *Workload) (string, error) {
	waves := chunk(r.membersOf(w), w.waveSize())
	for i, ms := range waves {
		if i > 0 && w.Waves.Pause > 0 && r.j.State(waveStep(w, i+1)) != StepDone {
			if !sleep(ctx, w.Waves.Pause) {
				return "", fmt.Errorf("rotation: %w: pausing between waves: %w", ErrInterrupted, context.Cause(ctx))
			}
		}
		if err := r.wave(ctx, w, i+1, ms); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s: %d wave(s) gated", w.Name, len(waves)), nil
}

func waveStep(w *Workload, i int) string { return fmt.Sprintf("wave:%s:%d", w.Name, i) }

// wave delivers, restarts (restart mode) and gates one wave.
func (r *Runner) wave(ctx context.Context, w *Workload, index int, ms []*memberState) error {
	step := waveStep(w, index)
	rec := WaveRecord{Workload: w.Name, Index: index, Start: time.Now()}
	for _, m := range ms {
		rec.Members = append(rec.Members, m.Name)
	}
	if r.j.State(step) == StepDone {
		rec.End, rec.OK, rec.Skipped, rec.Gate = rec.Start, true, true, "completed by an earlier run (journal)"
		r.addWave(rec)
		r.emit(Event{Kind: StepSkipped, Phase: PhaseWaves, Workload: w.Name, Wave: index, OK: true, Detail: rec.Gate})
		return nil
	}
	data := r.j.Data(step)
	since := rec.Start
	if t, err := time.Parse(time.RFC3339Nano, data["since"]); err == nil {
		since = t // resumed: count log lines since the wave really began
	} else {
		data = r.logOffsets(ms)
		data["since"] = since.UTC().Format(time.RFC3339Nano)
	}
	if err := r.j.Write(step, StepBegin, "", data); err != nil {
		return err
	}
	r.emit(Event{Kind: WaveStarted, Phase: PhaseWaves, Workload: w.Name, Wave: index, Detail: strings.Join(rec.Members, " ")})
	t := r.targets[w.Name]
	for _, m := range ms {
		if err := r.deliver(ctx, t, w, index, m); err != nil {
			return r.endWave(rec, err)
		}
	}
	if w.Mode == ModeRestart {
		for _, m := range ms {
			if err := r.restart(ctx, t, w, index, m); err != nil {
				return r.endWave(rec, err)
			}
		}
	}
	for {
		gate, counts, reason, err := r.gate(ctx, w, index, ms, data, since)
		rec.Gate, rec.LogCounts = gate, counts
		if err != nil {
			return r.endWave(rec, err)
		}
		if reason == "" {
			r.emit(Event{Kind: WaveGated, Phase: PhaseWaves, Workload: w.Name, Wave: index, OK: true, Detail: gate})
			break
		}
		rec.Gate = reason
		r.emit(Event{Kind: GateFailed, Phase: PhaseWaves, Workload: w.Name, Wave: index, Detail: reason})
		switch r.decide(ctx, GateFailure{Workload: w.Name, Wave: index, Members: rec.Members, Reason: reason}) {
		case DecideRetry:
			continue
		case DecidePause:
			return r.endWave(rec, fmt.Errorf("rotation: %w at workload %s wave %d: %s", ErrPaused, w.Name, index, reason))
		default:
			return r.endWave(rec, fmt.Errorf("rotation: %w: workload %s wave %d: %s", ErrGateFailed, w.Name, index, reason))
		}
	}
	if err := r.j.Write(step, StepDone, rec.Gate, nil); err != nil {
		return r.endWave(rec, err)
	}
	return r.endWave(rec, nil)
}

func (r *Runner) endWave(rec WaveRecord, err error) error {
	rec.End, rec.OK = time.Now(), err == nil
	if err != nil && !errors.Is(err, ErrGateFailed) && !errors.Is(err, ErrPaused) {
		rec.Gate = err.Error()
	}
	r.addWave(rec)
	r.emit(Event{Kind: WaveEnded, Phase: PhaseWaves, Workload: rec.Workload, Wave: rec.Index, OK: err == nil, Detail: errText(err, rec.Gate)})
	return err
}

func (r *Runner) addWave(rec WaveRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Waves = append(r.res.Waves, rec)
}

// deliver puts a member's new files in place; it is idempotent, so a
// delivery left in doubt is simply made again.
func (r *Runner) deliver(ctx context.Context, t Target, w *Workload, wave int, m *memberState) error {
	step := "deliver:" + m.Name
	if r.j.State(step) == StepDone {
		return nil
	}
	if err := r.j.Write(step, StepBegin, "", nil); err != nil {
		return err
	}
	if err := t.Deliver(ctx, m.Member, m.newFiles); err != nil {
		_ = r.j.Write(step, StepFailed, err.Error(), nil)
		return fmt.Errorf("rotation: %w: deliver to %s: %w", ErrPhaseFailed, m.Name, err)
	}
	r.emit(Event{Kind: MemberDelivered, Phase: PhaseWaves, Workload: w.Name, Wave: wave, Member: m.Name, OK: true})
	return r.j.Write(step, StepDone, "", nil)
}

// restart restarts a member once. A restart the journal shows begun but
// not finished (a crash) is observed first: a member already on new
// material is not restarted again.
func (r *Runner) restart(ctx context.Context, t Target, w *Workload, wave int, m *memberState) error {
	step := "restart:" + m.Name
	switch r.j.State(step) {
	case StepDone:
		return nil
	case StepBegin, StepFailed:
		settle := or(w.Gates.Settle, 2*time.Second)
		if obs, err := r.waitMembers(ctx, []*memberState{m}, settle+or(r.plan.Budget.RestartTime, time.Second)+5*time.Second, settle); err == nil {
			r.emit(Event{Kind: StepSkipped, Phase: PhaseWaves, Workload: w.Name, Wave: wave, Member: m.Name, OK: true,
				Detail: "restart left in doubt; member observed on new material, not restarted again"})
			return r.j.Write(step, StepDone, "observed after resume: "+obs, nil)
		} else if errors.Is(err, ErrInterrupted) {
			return err
		}
	}
	if err := r.j.Write(step, StepBegin, "", nil); err != nil {
		return err
	}
	if err := t.Restart(ctx, m.Member); err != nil {
		_ = r.j.Write(step, StepFailed, err.Error(), nil)
		return fmt.Errorf("rotation: %w: restart %s: %w", ErrPhaseFailed, m.Name, err)
	}
	r.emit(Event{Kind: MemberRestarted, Phase: PhaseWaves, Workload: w.Name, Wave: wave, Member: m.Name, OK: true})
	return r.j.Write(step, StepDone, "", nil)
}

// gate observes a wave: members on new material, settled; log lines under
// their limits; checks passing. A non-empty reason is a failed gate; an
// error is something that could not be observed.
func (r *Runner) gate(ctx context.Context, w *Workload, wave int, ms []*memberState, offsets map[string]string, since time.Time) (observed string, counts map[string]int, reason string, err error) {
	obs, werr := r.waitMembers(ctx, ms, or(w.Gates.Timeout, 60*time.Second), or(w.Gates.Settle, 2*time.Second))
	switch {
	case errors.Is(werr, errNotOnNew):
		return obs, nil, obs, nil
	case werr != nil:
		return "", nil, "", werr
	}
	counts, over, err := r.countLogs(ctx, w, ms, offsets, since)
	if err != nil {
		return obs, counts, "", err
	}
	if len(counts) > 0 {
		obs += "; log lines: " + formatCounts(counts)
	}
	if len(over) > 0 {
		return obs, counts, "log gate: " + strings.Join(over, ", "), nil
	}
	if err := r.runChecks(ctx, w, wave, ms); err != nil {
		return obs, counts, err.Error(), nil
	}
	if len(w.Gates.Checks) > 0 {
		obs += fmt.Sprintf("; %d check(s) passed", len(w.Gates.Checks))
	}
	return obs, counts, "", nil
}

func formatCounts(c map[string]int) string {
	var parts []string
	for _, k := range []string{"tls", "auth", "disconnected", "reconnected"} {
		if v, ok := c[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	for k, v := range c {
		switch k {
		case "tls", "auth", "disconnected", "reconnected":
		default:
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	return strings.Join(parts, " ")
}

func (r *Runner) decide(ctx context.Context, f GateFailure) GateDecision {
	if r.onGate != nil {
		return r.onGate(ctx, f)
	}
	if r.plan.OnGateFailure == GatePause {
		return DecidePause
	}
	return DecideAbort
}

// converged waits for every member of the plan on new material, settled.
func (r *Runner) converged(ctx context.Context) (string, error) {
	settle := 2 * time.Second
	for i := range r.plan.Workloads {
		settle = max(settle, r.plan.Workloads[i].Gates.Settle)
	}
	obs, err := r.waitMembers(ctx, r.mat.members, or(r.plan.Timeouts.Converge, 60*time.Second), settle)
	if errors.Is(err, errNotOnNew) {
		return "", fmt.Errorf("rotation: %w: not converged: %s", ErrPhaseFailed, obs)
	}
	return obs, err
}

// revoke makes the servers trust only the new CA, then kicks every
// connection still presenting old material; each kicked member must come
// back on new material.
func (r *Runner) revoke(ctx context.Context) (string, error) {
	obs, err := r.setTrust(ctx, PhaseRevoke, r.mat.newCA, map[string]bool{"new": true})
	if err != nil {
		return "", err
	}
	v := r.observe(ctx)
	if err := v.err(); err != nil {
		return "", err
	}
	byServer := map[string]Server{}
	for _, s := range r.servers {
		byServer[s.Name()] = s
	}
	var stragglers []*memberState
	for _, m := range r.mat.members {
		mv := v.of(m)
		conns := append(append([]Conn(nil), mv.Old...), mv.Other...)
		if len(conns) == 0 {
			continue
		}
		stragglers = append(stragglers, m)
		r.kicked[m.Name] = true
		for _, c := range conns {
			s := byServer[c.Server]
			kerr := s.Kick(ctx, c.CID)
			r.emit(Event{Kind: ConnKicked, Phase: PhaseRevoke, Member: m.Name, Server: c.Server, OK: kerr == nil,
				Detail: fmt.Sprintf("cid %d presenting %s", c.CID, short(c.CertSHA256))})
			if kerr != nil {
				return "", fmt.Errorf("rotation: %w: kick %s cid %d on %s: %w", ErrPhaseFailed, m.Name, c.CID, c.Server, kerr)
			}
			r.mu.Lock()
			r.res.Kicks = append(r.res.Kicks, KickRecord{Server: c.Server, CID: c.CID, Member: m.Name, At: time.Now()})
			r.mu.Unlock()
		}
	}
	if len(stragglers) == 0 {
		return obs + "; no connection presented old material, nothing kicked", nil
	}
	back, err := r.waitMembers(ctx, stragglers, or(r.plan.Timeouts.Return, 30*time.Second), time.Second)
	r.mu.Lock()
	for i := range r.res.Kicks {
		r.res.Kicks[i].Returned = err == nil
	}
	r.mu.Unlock()
	if errors.Is(err, errNotOnNew) {
		return "", fmt.Errorf("rotation: %w: kicked member(s) did not come back on new material: %s", ErrPhaseFailed, back)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; kicked %d member(s) still on old material, all back on new: %s", obs, len(stragglers), back), nil
}

// proof probes every server with the old and the new probe leaf in the
// same step: the old must be refused in the TLS handshake, the new must
// complete CONNECT/PING/PONG, and no old fingerprint may remain.
func (r *Runner) proof(ctx context.Context) (string, error) {
	v := r.observe(ctx)
	if err := v.err(); err != nil {
		return "", err
	}
	old := map[string]int{}
	for _, m := range r.mat.members {
		mv := v.of(m)
		for _, c := range append(mv.Old, mv.Other...) {
			old[c.Server]++
		}
	}
	proofs := make([]ServerProof, len(r.servers))
	var wg sync.WaitGroup
	for i, s := range r.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ServerProof{Server: s.Name(), OldRemaining: old[s.Name()]}
			var inner sync.WaitGroup
			inner.Add(2)
			go func() { defer inner.Done(); p.Old = r.probe(ctx, s, "old") }()
			go func() { defer inner.Done(); p.New = r.probe(ctx, s, "new") }()
			inner.Wait()
			p.OK = p.Old.Outcome == RejectedHandshake && p.New.Outcome == Accepted && p.OldRemaining == 0
			proofs[i] = p
		}()
	}
	wg.Wait()
	r.mu.Lock()
	r.res.Proof = proofs
	r.mu.Unlock()
	var bad, notes []string
	for _, p := range proofs {
		line := fmt.Sprintf("%s: old %s (%s), new %s, %d old connection(s)", p.Server, p.Old.Outcome, p.Old.Detail, p.New.Outcome, p.OldRemaining)
		if p.OK {
			notes = append(notes, line)
		} else {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("rotation: %w: proof: %s", ErrPhaseFailed, strings.Join(bad, "; "))
	}
	return strings.Join(notes, "; "), nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
