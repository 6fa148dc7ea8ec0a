package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// preflight loads and inspects the material, reads every server, finds
// every member, and checks the budget. It runs again on resume.
func (r *Runner) preflight(ctx context.Context) (string, error) {
	mat, err := loadMaterial(r.plan)
	if err != nil {
		return "", err
	}
	r.useMaterial(mat)
	for i, s := range r.servers {
		// A pid file that names no nats-server, a pinned_certs_file
		// missing for a same-CA rotation (found by content, which
		// Validate cannot see), or a ca_file that cannot be read or
		// bundled, is found before anything is touched.
		if h, ok := s.(*hostServer); ok {
			if h.spec.Reload.Method == ReloadSignal {
				if _, err := h.pid(); err != nil {
					return "", err
				}
			}
			if mat.pinned && h.spec.PinnedCertsFile == "" {
				return "", fmt.Errorf("rotation: %w: servers[%d].pinned_certs_file: required: old and new client CA hold the same CA, so old leaves are revoked by pinned_certs", ErrPlan, i)
			}
		}
		orig, err := r.originalCA(ctx, s)
		if err != nil {
			return "", err
		}
		if _, err := r.trustBundle(s, orig, false); err != nil {
			return "", err
		}
	}
	// A member whose current key pair was neither given (old) nor read
	// from its files (remote, unreadable) has no backup: abort could not
	// put it back. Refused before a rotation begins; a resumed one is
	// past that choice and is only told.
	var unbacked []string
	for _, m := range mat.members {
		if m.oldFiles == nil || len(m.oldFiles.KeyPEM) == 0 {
			unbacked = append(unbacked, m.Name)
		}
	}
	var noBackup string
	if len(unbacked) > 0 {
		noBackup = fmt.Sprintf("no copy of the current key pair of %s (cert_file and key_file cannot be read here): abort could not restore it; give members[].old.cert and old.key", strings.Join(unbacked, ", "))
		if r.j.State("rotation") == "" {
			return "", fmt.Errorf("rotation: %w: %s", ErrPlan, noBackup)
		}
	}
	est, err := r.plan.estimate(len(r.servers))
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.res.Budget = est
	r.mu.Unlock()
	if !est.Fits {
		return "", fmt.Errorf("rotation: %w: the budget (%s, worst case %s) exceeds the SLA %s", ErrPhaseFailed, est.Total, est.WorstTotal, est.SLA)
	}
	ids, err := r.identities(ctx)
	if err != nil {
		return "", err
	}
	var notes []string
	for _, s := range r.servers {
		v := ids[s.Name()]
		notes = append(notes, fmt.Sprintf("%s (%s) config loaded %s", s.Name(), v.Name, v.ConfigLoadTime.Format(time.RFC3339)))
	}
	// Members must be present, on old material or (resumed) new.
	timeout := or(r.plan.Timeouts.Converge, 60*time.Second) / 2
	deadline := time.Now().Add(timeout)
	var missing []string
	var onOld, onNewN int
	for {
		st, err := r.look(ctx, mat.members)
		if err != nil {
			return "", err
		}
		missing, onOld, onNewN = nil, 0, 0
		for i, m := range mat.members {
			switch e := st.Expected[i]; {
			case onNew(st, i, m):
				onNewN++
			case e.Seen >= m.Replicas:
				onOld++
			default:
				missing = append(missing, fmt.Sprintf("%s (seen %d, want %d)", m.Name, e.Seen, m.Replicas))
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
		len(r.servers), strings.Join(notes, "; "), len(mat.members), onOld, onNewN, est.Total, est.WorstTotal)
	if est.SLA > 0 {
		obs += " within SLA " + est.SLA.String()
	}
	if len(mat.findings) > 0 {
		obs += "; material: " + strings.Join(mat.findings, "; ")
	}
	if noBackup != "" {
		obs += "; " + noBackup
	}
	if m := r.plan.Material; m.NewServerCA != "" {
		obs += fmt.Sprintf("; server CA rotation: members' roots gain %s, lose %s; routes: %s",
			shortAll(mat.newServerFPs), shortAll(mat.oldServerFPs), m.ServerCerts.Routes)
	}
	if mat.pinned {
		obs += "; same client CA: old leaves will be revoked by pinned_certs"
	}
	// Said before anything is touched, as a warning: clients of the
	// servers that are no member of the plan are not rotated. With
	// pinned_certs revoke drops each whose leaf is not pinned; with a new
	// CA, fleet cannot tell their leaves' CA (they show as unknown), and
	// any on the old one is refused at its next reconnect after revoke.
	if st, err := r.look(ctx, mat.members); err == nil {
		var others []string
		for i := range st.Connections {
			c := &st.Connections[i]
			if c.System || r.memberOf(c) != nil || mat.pinned && !r.stale(c) {
				continue
			}
			others = append(others, fmt.Sprintf("%s %s on %s", or(c.Name, "(no name)"), short(c.SPKISHA256), c.Server))
		}
		switch {
		case len(others) == 0:
		case mat.pinned:
			obs += fmt.Sprintf("; warning: %d connection(s) of no member will be dropped at revoke (list them in material.pinned to keep them): %s",
				len(others), strings.Join(others, ", "))
		default:
			obs += fmt.Sprintf("; warning: %d connection(s) of no member, not rotated: any on a leaf of the old client CA is refused at its next reconnect after revoke: %s",
				len(others), strings.Join(others, ", "))
		}
	}
	return obs, nil
}

// useMaterial keeps the loaded material and gives host servers what
// natscert's own connections to them need: roots that verify them, and the
// probe leaves to present.
func (r *Runner) useMaterial(mat *loaded) {
	r.mat = mat
	for _, s := range r.servers {
		if h, ok := s.(*hostServer); ok {
			h.roots = mat.serverRoots
			h.certs = []tls.Certificate{mat.probeNew, mat.probeOld}
		}
	}
}

// trustBoth makes every server trust the old and the new client CA and
// observes it: config_load_time changed, and probes under both CAs are
// accepted by every server.
func (r *Runner) trustBoth(ctx context.Context) (string, error) {
	bundles := map[string][]byte{}
	for _, s := range r.servers {
		orig, err := r.backupServerCA(ctx, s)
		if err != nil {
			return "", err
		}
		if bundles[s.Name()], err = r.trustBundle(s, orig, false); err != nil {
			return "", err
		}
	}
	return r.setTrust(ctx, PhaseTrustBoth, bundles, map[string]bool{"old": true, "new": true})
}

// trustBundle is a server's ca_file built from orig, the one it had before
// the rotation: the new client CA added (trust_both), then the old client
// CA removed (revoke; kept when old and new are the same CA). Every other
// CA the server trusts (monitoring, other teams, leaf nodes) stays, in
// its order.
func (r *Runner) trustBundle(s Server, orig []byte, revoke bool) ([]byte, error) {
	certs, err := pki.BundleCertificates(orig, r.mat.newCA)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: %s: ca_file: %w", ErrPlan, s.Name(), err)
	}
	if revoke && !r.mat.pinned {
		certs = slices.DeleteFunc(certs, func(c *x509.Certificate) bool {
			return slices.ContainsFunc(r.mat.oldCACerts, c.Equal)
		})
	}
	return pki.EncodeCertificates(certs...), nil
}

// backupServerCA keeps a copy of a server's ca_file, once, for abort and
// for the bundles of trust_both and revoke; it returns the copy.
func (r *Runner) backupServerCA(ctx context.Context, s Server) ([]byte, error) {
	b, err := r.originalCA(ctx, s)
	if err != nil {
		return nil, err
	}
	path := r.serverBackup(s)
	if _, err := os.Stat(path); err == nil {
		return b, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("rotation: backup: %w", err)
	}
	if err := pki.WriteFileAtomic(path, b, 0o644); err != nil {
		return nil, fmt.Errorf("rotation: backup: %w", err)
	}
	return b, nil
}

// originalCA is the ca_file s had before the rotation: its backup, once
// taken; before that, the file as it is now or, when it is remote and
// cannot be read back, the plan's copy of it (servers[].current_ca).
func (r *Runner) originalCA(ctx context.Context, s Server) ([]byte, error) {
	if b, err := os.ReadFile(r.serverBackup(s)); err == nil {
		return b, nil
	}
	b, err := s.ReadClientCA(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	if len(b) > 0 {
		return b, nil
	}
	h, ok := s.(*hostServer)
	if !ok || h.spec.CurrentCA == "" {
		return nil, fmt.Errorf("rotation: %w: %s: its ca_file cannot be read back: give servers[].current_ca, a copy of what it holds now, so that the CAs it trusts besides the old client CA are kept", ErrPlan, s.Name())
	}
	if b, err = os.ReadFile(r.plan.path(h.spec.CurrentCA)); err != nil {
		return nil, fmt.Errorf("rotation: %w: %s: current_ca: %v", ErrPlan, s.Name(), err)
	}
	return b, nil
}

func (r *Runner) serverBackup(s Server) string {
	return filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "ca_file.pem")
}

// setTrust writes bundles (by server name) as the servers' ca_file, reloads each in turn
// (stopping at the first that fails), and waits until every server shows a
// new config_load_time and answers the probes as want says (true:
// accepted). The old probe is only required to be accepted, never
// rejected, here: rejection is the proof's to observe.
func (r *Runner) setTrust(ctx context.Context, phase string, bundles map[string][]byte, want map[string]bool) (string, error) {
	before, err := r.loadTimes(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range r.servers {
		cur, err := s.ReadClientCA(ctx)
		if err != nil {
			return "", fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
		}
		// No bundle: the files were written already (abort restores
		// each server's own).
		if bundle := bundles[s.Name()]; bundle != nil && !bytes.Equal(cur, bundle) {
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
		pending, notes, unread := r.checkTrust(ctx, before, want)
		if len(pending) == 0 {
			return strings.Join(notes, "; "), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("rotation: %w: not observed within %s: %s", watchErr(pending, unread), timeout, strings.Join(pending, "; "))
		}
		sleep(ctx, r.poll)
	}
}

// watchErr is the sentinel of a watch that ran out of time with pending
// reasons, unread of which are servers that could not be read or
// reached: ErrIncomplete when nothing else is pending (unseen is not
// wrong), ErrPhaseFailed when a server was seen not as wanted.
func watchErr(pending []string, unread int) error {
	if unread == len(pending) {
		return ErrIncomplete
	}
	return ErrPhaseFailed
}

// loadTimes reads every server's config_load_time.
func (r *Runner) loadTimes(ctx context.Context) (map[string]time.Time, error) {
	ids, err := r.identities(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for name, v := range ids {
		out[name] = v.ConfigLoadTime
	}
	return out, nil
}

// checkTrust observes each server once: its configuration reloaded since
// before, and the probes answered as wanted. unread counts the pending
// reasons that are a server not read or not reached.
func (r *Runner) checkTrust(ctx context.Context, before map[string]time.Time, want map[string]bool) (pending, notes []string, unread int) {
	ids, ierr := r.identities(ctx)
	for _, s := range r.servers {
		v, ok := ids[s.Name()]
		if !ok {
			pending = append(pending, fmt.Sprintf("%s: not readable: %v", s.Name(), ierr))
			unread++
			continue
		}
		if !v.ConfigLoadTime.After(before[s.Name()]) {
			pending = append(pending, fmt.Sprintf("%s: config_load_time still %s (reload not taken)", s.Name(), v.ConfigLoadTime.Format(time.RFC3339Nano)))
			continue
		}
		note := fmt.Sprintf("%s: config_load_time %s", s.Name(), v.ConfigLoadTime.Format(time.RFC3339Nano))
		ok = true
		for _, which := range []string{"new", "old"} {
			if !want[which] {
				continue
			}
			pr := r.probe(ctx, s, which)
			if pr.Outcome != Accepted {
				pending = append(pending, fmt.Sprintf("%s: %s probe %s (%s)", s.Name(), which, pr.Outcome, pr.Detail))
				if pr.Outcome == Unreachable {
					unread++
				}
				ok = false
				continue
			}
			note += ", " + which + " probe accepted"
		}
		if ok {
			notes = append(notes, note)
		}
	}
	return pending, notes, unread
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

// decide asks what to do about a failed gate, one workload at a time.
func (r *Runner) decide(ctx context.Context, f GateFailure) GateDecision {
	r.gateMu.Lock()
	defer r.gateMu.Unlock()
	if r.onGate != nil {
		return r.onGate(ctx, f)
	}
	if r.plan.OnGateFailure == GatePause {
		return DecidePause
	}
	return DecideStop
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

// revoke makes the servers trust only the new CA (or, when old and new
// client CA are the same, accept only the pinned new leaves: pinned_certs
// is re-checked on reload and drops every unpinned connection), then
// kicks every connection still presenting old material; each member that
// was dropped or kicked must come back on new material.
func (r *Runner) revoke(ctx context.Context) (string, error) {
	before, err := r.look(ctx, r.mat.members)
	if err != nil {
		return "", err
	}
	stale := map[string]bool{}
	var stragglers []*memberState
	for i := range before.Connections {
		c := &before.Connections[i]
		if r.stale(c) {
			stale[fmt.Sprintf("%s/%d", c.ServerID, c.CID)] = true
			if m := r.memberOf(c); m != nil && !r.kicked[m.Name] {
				r.kicked[m.Name] = true
				stragglers = append(stragglers, m)
			}
		}
	}
	if r.mat.pinned {
		conf := r.pinnedConf()
		for _, s := range r.servers {
			if err := s.WritePinnedCerts(ctx, conf); err != nil {
				return "", fmt.Errorf("rotation: %w: %s: %w", ErrPhaseFailed, s.Name(), err)
			}
		}
	}
	bundles := map[string][]byte{}
	for _, s := range r.servers {
		orig, err := r.originalCA(ctx, s)
		if err != nil {
			return "", err
		}
		if bundles[s.Name()], err = r.trustBundle(s, orig, true); err != nil {
			return "", err
		}
	}
	obs, err := r.setTrust(ctx, PhaseRevoke, bundles, map[string]bool{"new": true})
	if err != nil {
		return "", err
	}
	if r.mat.pinned {
		obs = "pinned_certs: the new leaves only; " + obs
	}
	kicked, err := r.kickStale(ctx, PhaseRevoke)
	if err != nil {
		return "", err
	}
	kicks := r.kicksIn(PhaseRevoke)
	dropped := len(stale) - kicks
	for _, m := range kicked {
		if !contains(stragglers, m) {
			stragglers = append(stragglers, m)
		}
	}
	if len(stale) == 0 && len(kicked) == 0 {
		return obs + "; no connection presented old material, nothing kicked", nil
	}
	obs += fmt.Sprintf("; %d connection(s) on old material dropped by the reload, %d kicked", max(dropped, 0), kicks)
	if len(stragglers) == 0 {
		return obs, nil
	}
	back, err := r.waitMembers(ctx, stragglers, or(r.plan.Timeouts.Return, 30*time.Second), time.Second)
	r.markReturned(PhaseRevoke, err == nil)
	if errors.Is(err, errNotOnNew) {
		return "", fmt.Errorf("rotation: %w: member(s) dropped or kicked did not come back on new material: %s", ErrPhaseFailed, back)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; %d member(s) that were on old material all back on new: %s", obs, len(stragglers), back), nil
}

// kicksIn counts the kicks recorded in phase.
func (r *Runner) kicksIn(phase string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.res.Kicks {
		if k.Phase == phase {
			n++
		}
	}
	return n
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// kickStale kicks every connection that must not survive a revoke (see
// stale) and returns the members it belonged to.
func (r *Runner) kickStale(ctx context.Context, phase string) ([]*memberState, error) {
	st, err := r.look(ctx, r.mat.members)
	if err != nil {
		return nil, err
	}
	byID := r.serverByID(st)
	var stragglers []*memberState
	for i := range st.Connections {
		c := &st.Connections[i]
		if !r.stale(c) {
			continue
		}
		m, name := r.memberOf(c), c.Member
		if m != nil {
			name = m.Name
			if !r.kicked[m.Name] {
				stragglers = append(stragglers, m)
			}
			r.kicked[m.Name] = true
		}
		if err := r.kick(ctx, byID, c, phase, name, fmt.Sprintf("cid %d presenting %s (%s)", c.CID, short(c.CertSHA256), c.Class)); err != nil {
			return nil, err
		}
	}
	return stragglers, nil
}

// kick disconnects c and records it. A connection gone by itself since
// the look (dropped by a reload, or reconnected) answers "no such
// client": it is gone, as wanted.
func (r *Runner) kick(ctx context.Context, byID map[string]Server, c *fleet.Connection, phase, member, detail string) error {
	s := byID[c.ServerID]
	if s == nil {
		return fmt.Errorf("rotation: %w: kick %s cid %d: server %s is not one of the plan's", ErrPhaseFailed, member, c.CID, c.Server)
	}
	err := s.Kick(ctx, c.CID)
	if err != nil && strings.Contains(err.Error(), "no such client") {
		err = nil
	}
	r.emit(Event{Kind: ConnKicked, Phase: phase, Member: member, Server: s.Name(), OK: err == nil, Detail: detail})
	if err != nil {
		return fmt.Errorf("rotation: %w: kick %s cid %d on %s: %w", ErrPhaseFailed, member, c.CID, s.Name(), err)
	}
	r.mu.Lock()
	r.res.Kicks = append(r.res.Kicks, KickRecord{Phase: phase, Server: s.Name(), CID: c.CID, Member: member, At: time.Now()})
	r.mu.Unlock()
	return nil
}

// markReturned records whether the members kicked in phase came back.
func (r *Runner) markReturned(phase string, back bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.res.Kicks {
		if k := &r.res.Kicks[i]; k.Phase == phase {
			k.Returned = back
		}
	}
}

// proof probes every server with the old and the new probe leaf in the
// same step: the old must be refused (refused), the new must complete
// CONNECT/PING/PONG, no old fingerprint may remain, and a server whose
// certificate was renewed must present the new one.
func (r *Runner) proof(ctx context.Context) (string, error) {
	st, err := r.look(ctx, r.mat.members)
	if err != nil {
		return "", err
	}
	byID := r.serverByID(st)
	old := map[string]int{}
	for i := range st.Connections {
		if c := &st.Connections[i]; r.stale(c) && byID[c.ServerID] != nil {
			old[byID[c.ServerID].Name()]++
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
			p.OldRefused = r.refused(p.Old)
			p.OK = p.OldRefused && p.New.Outcome == Accepted && p.OldRemaining == 0
			if c := r.newServerCert(s); r.plan.Material.ServerCerts != nil && c != nil {
				p.ServerCertSHA256 = pki.CertSHA256(c)
				p.OK = p.OK && p.New.ServerCertSHA256 == p.ServerCertSHA256
			}
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

// refused reports whether a probe's certificate was refused: by an alert
// in (or, TLS 1.3, just after) the handshake, or by the server closing the
// connection after the handshake before sending anything, which is how
// pinned_certs refuses and how a TLS 1.3 rejection looks when a reset
// beats its alert. A timeout is never a refusal.
func (r *Runner) refused(p ProbeResult) bool {
	switch p.Outcome {
	case RejectedHandshake:
		return true
	case ClosedAfterHandshake:
		return r.mat.pinned || p.TLSVersion == tls.VersionName(tls.VersionTLS13)
	}
	return false
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
