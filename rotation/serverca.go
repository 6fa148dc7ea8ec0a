package rotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// A server CA rotation (material.new_server_ca) moves the servers to
// leaves of a CA the members do not trust yet. Trust is widened first and
// narrowed last, each step observed:
//
//   - server_roots: every member's roots file = old+new server CA; a
//     reload-mode member's log shows it loaded roots holding both, a
//     restart-mode member is restarted and must reconnect;
//   - server_certs: the servers move to their new leaves (serverCerts);
//   - server_reconnect: every member connection is kicked and each member
//     must come back: its handshake verified the new server certificate;
//   - server_roots_new: roots = the new server CA only, observed the same
//     way, and a second kick round must come back too.
//
// A member failing the first round stops the rotation while every
// member's roots still hold old+new, so abort can put the servers back on
// their old certificates.

// rootsRound is one change of every member's roots.
type rootsRound struct {
	name  string // journal key
	phase string
	// roots is what a member's roots file must hold.
	roots func(*memberState) []byte
	// want: fingerprints the loaded roots must hold; drop: must not.
	want, drop []string
}

func (r *Runner) serverRoots(ctx context.Context) (string, error) {
	bundle, err := pki.Bundle(r.mat.oldServerCA, r.mat.newServerCA)
	if err != nil {
		return "", fmt.Errorf("rotation: server roots: %w", err)
	}
	return r.setRoots(ctx, rootsRound{name: "both", phase: PhaseServerRoots, roots: same(bundle),
		want: append(append([]string(nil), r.mat.oldServerFPs...), r.mat.newServerFPs...)}, nil)
}

func (r *Runner) serverReconnect(ctx context.Context) (string, error) {
	return r.kickRound(ctx, PhaseServerReconnect, "1")
}

func (r *Runner) serverRootsNew(ctx context.Context) (string, error) {
	obs, err := r.setRoots(ctx, rootsRound{name: "new", phase: PhaseServerRootsNew, roots: same(r.mat.newServerCA),
		want: r.mat.newServerFPs, drop: r.mat.oldServerFPs}, nil)
	if err != nil {
		return "", err
	}
	back, err := r.kickRound(ctx, PhaseServerRootsNew, "2")
	if err != nil {
		return "", err
	}
	return obs + "; " + back, nil
}

func same(b []byte) func(*memberState) []byte { return func(*memberState) []byte { return b } }

// setRoots delivers rd.roots to the members (only: those it selects),
// workload by workload in the workload's waves, and observes each wave:
// restart-mode members are restarted and must reconnect; reload-mode
// members must log that they loaded the roots.
func (r *Runner) setRoots(ctx context.Context, rd rootsRound, only func(*memberState) bool) (string, error) {
	var notes []string
	for i := range r.plan.Workloads {
		w := &r.plan.Workloads[i]
		var ms []*memberState
		for _, m := range r.membersOf(w) {
			if only == nil || only(m) {
				ms = append(ms, m)
			}
		}
		for _, wave := range chunk(ms, w.waveSize()) {
			n, err := r.rootsWave(ctx, w, wave, rd)
			if err != nil {
				return "", err
			}
			notes = append(notes, n)
		}
	}
	return strings.Join(notes, "; "), nil
}

func fileHolds(path string, b []byte) bool {
	cur, err := os.ReadFile(path)
	return err == nil && bytes.Equal(cur, b)
}

func rootsStep(rd rootsRound, m *memberState) string { return "roots:" + rd.name + ":" + m.Name }

// rootsWave delivers and observes one wave of members. Each delivery is
// journaled before (with the member's log offset and its connections, to
// observe against on resume) and after.
func (r *Runner) rootsWave(ctx context.Context, w *Workload, ms []*memberState, rd rootsRound) (string, error) {
	before, err := r.look(ctx, ms)
	if err != nil {
		return "", err
	}
	t := r.targets[w.Name]
	var delivered, held []*memberState
	for _, m := range ms {
		step := rootsStep(rd, m)
		switch r.j.State(step) {
		case StepDone:
			if r.j.Data(step)["held"] == "" {
				delivered = append(delivered, m)
			} else {
				held = append(held, m)
			}
			continue
		case "":
			// A reload-mode member whose local file holds the bundle
			// already has nothing to load, and would log nothing.
			if w.Mode == ModeReload && fileHolds(m.RootsFile, rd.roots(m)) {
				if err := r.j.Write(step, StepDone, "already held", map[string]string{"held": "1"}); err != nil {
					return "", err
				}
				held = append(held, m)
				continue
			}
		}
		data := r.j.Data(step)
		if data["since"] == "" {
			data = r.logOffsets([]*memberState{m})
			data["since"] = time.Now().UTC().Format(time.RFC3339Nano)
			data["conns"] = strings.Join(r.connsOf(before, m), " ")
		}
		if err := r.backupRoots(m); err != nil {
			return "", err
		}
		if err := r.j.Write(step, StepBegin, "", data); err != nil {
			return "", err
		}
		if err := deliverRoots(ctx, t, m.Member, rd.roots(m)); err != nil {
			_ = r.j.Write(step, StepFailed, err.Error(), nil)
			return "", fmt.Errorf("rotation: %w: %w", ErrPhaseFailed, err)
		}
		r.emit(Event{Kind: MemberDelivered, Phase: rd.phase, Workload: w.Name, Member: m.Name, OK: true, Detail: "roots: " + rootsText(rd)})
		if err := r.j.Write(step, StepDone, "", nil); err != nil {
			return "", err
		}
		delivered = append(delivered, m)
	}
	var obs string
	if w.Mode == ModeRestart {
		obs, err = r.restartForRoots(ctx, t, w, delivered, rd)
	} else {
		obs, err = r.waitRootsLogged(ctx, w, delivered, rd)
	}
	if err != nil {
		return "", err
	}
	if len(held) > 0 {
		var names []string
		for _, m := range held {
			names = append(names, m.Name)
		}
		obs += fmt.Sprintf("; roots already held by %s (nothing delivered)", strings.Join(names, ", "))
	}
	return obs, nil
}

// restartForRoots restarts each member once and observes it reconnect:
// every connection it has is one it did not have before the delivery.
// A restart left in doubt by a crash is observed first, not repeated.
func (r *Runner) restartForRoots(ctx context.Context, t Target, w *Workload, ms []*memberState, rd rootsRound) (string, error) {
	if len(ms) == 0 {
		return fmt.Sprintf("%s: nothing to restart", w.Name), nil
	}
	gone := map[string]bool{}
	for _, m := range ms {
		for _, k := range strings.Fields(r.j.Data(rootsStep(rd, m))["conns"]) {
			gone[k] = true
		}
	}
	timeout := or(r.plan.Budget.RestartTime, time.Second) + or(w.Gates.Timeout, 60*time.Second)
	for _, m := range ms {
		step := "roots-restart:" + rd.name + ":" + m.Name
		switch r.j.State(step) {
		case StepDone:
			continue
		case StepBegin, StepFailed:
			if obs, err := r.waitBack(ctx, []*memberState{m}, gone, or(w.Gates.Settle, 2*time.Second)+or(r.plan.Budget.RestartTime, time.Second)+5*time.Second); err == nil {
				if err := r.j.Write(step, StepDone, "observed after resume: "+obs, nil); err != nil {
					return "", err
				}
				continue
			} else if !errors.Is(err, errNotBack) {
				return "", err
			}
		}
		if err := r.j.Write(step, StepBegin, "", nil); err != nil {
			return "", err
		}
		if err := t.Restart(ctx, m.Member); err != nil {
			_ = r.j.Write(step, StepFailed, err.Error(), nil)
			return "", fmt.Errorf("rotation: %w: restart %s: %w", ErrPhaseFailed, m.Name, err)
		}
		r.emit(Event{Kind: MemberRestarted, Phase: rd.phase, Workload: w.Name, Member: m.Name, OK: true, Detail: "to load roots: " + rootsText(rd)})
		if err := r.j.Write(step, StepDone, "", nil); err != nil {
			return "", err
		}
	}
	obs, err := r.waitBack(ctx, ms, gone, timeout)
	if errors.Is(err, errNotBack) {
		return "", fmt.Errorf("rotation: %w: %s: restarted to load roots (%s), not reconnected: %s", ErrPhaseFailed, w.Name, rootsText(rd), obs)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: restarted for roots %s, %s", w.Name, rootsText(rd), obs), nil
}

// waitRootsLogged waits until each member's log shows, since its
// delivery, as many roots-loaded lines as it has replicas holding every
// fingerprint of rd.want and none of rd.drop.
func (r *Runner) waitRootsLogged(ctx context.Context, w *Workload, ms []*memberState, rd rootsRound) (string, error) {
	if len(ms) == 0 {
		return fmt.Sprintf("%s: nothing to observe", w.Name), nil
	}
	pattern := DefaultRootsLoaded
	if lg := w.Gates.Log; lg != nil && lg.RootsLoaded != "" {
		pattern = lg.RootsLoaded
	}
	re := regexp.MustCompile(pattern) // checked by Validate
	timeout := or(w.Gates.Timeout, 60*time.Second)
	deadline := time.Now().Add(timeout)
	for {
		var pending []string
		for _, m := range ms {
			data := r.j.Data(rootsStep(rd, m))
			since, _ := time.Parse(time.RFC3339Nano, data["since"])
			b, err := r.memberLog(ctx, m, data, since)
			if err != nil {
				return "", err
			}
			if n := countRootsLines(b, re, rd); n < m.Replicas {
				pending = append(pending, fmt.Sprintf("%s (%d of %d)", m.Name, n, m.Replicas))
			}
		}
		if len(pending) == 0 {
			return fmt.Sprintf("%s: %d member(s) logged roots %s", w.Name, len(ms), rootsText(rd)), nil
		}
		if time.Now().After(deadline) || !sleep(ctx, r.poll) {
			if err := r.parentDone(ctx); err != nil {
				return "", err
			}
			return "", fmt.Errorf("rotation: %w: no %q line with roots %s within %s in the log of %s", ErrPhaseFailed,
				pattern, rootsText(rd), timeout, strings.Join(pending, ", "))
		}
	}
}

// countRootsLines counts the lines of log that match re, name every
// fingerprint of rd.want and none of rd.drop.
func countRootsLines(log []byte, re *regexp.Regexp, rd rootsRound) int {
	n := 0
	for _, line := range bytes.Split(log, []byte("\n")) {
		if !re.Match(line) {
			continue
		}
		ok := true
		for _, fp := range rd.want {
			ok = ok && bytes.Contains(line, []byte(fp))
		}
		for _, fp := range rd.drop {
			ok = ok && !bytes.Contains(line, []byte(fp))
		}
		if ok {
			n++
		}
	}
	return n
}

func rootsText(rd rootsRound) string {
	s := "holding " + shortAll(rd.want)
	if len(rd.drop) > 0 {
		s += " without " + shortAll(rd.drop)
	}
	return s
}

func shortAll(fps []string) string {
	out := make([]string, len(fps))
	for i, fp := range fps {
		out[i] = short(fp)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// kickRound kicks every member connection once and waits until every
// member is back, on connections it did not have before, in the view of
// every server: each new handshake verified the servers' certificates
// with the member's roots. The kicked set is journaled, so a resumed
// round kicks only what is still up and waits for the rest.
func (r *Runner) kickRound(ctx context.Context, phase, round string) (string, error) {
	step := "kick:" + round
	gone := map[string]bool{}
	for _, k := range strings.Fields(r.j.Data(step)["conns"]) {
		gone[k] = true
	}
	st, err := r.look(ctx, r.mat.members)
	if err != nil {
		return "", err
	}
	if len(gone) == 0 {
		var keys []string
		for _, m := range r.mat.members {
			keys = append(keys, r.connsOf(st, m)...)
		}
		for _, k := range keys {
			gone[k] = true
		}
		if err := r.j.Write(step, StepBegin, "", map[string]string{"conns": strings.Join(keys, " ")}); err != nil {
			return "", err
		}
	}
	byID := r.serverByID(st)
	var kicked int
	for i := range st.Connections {
		c := &st.Connections[i]
		m := r.memberOf(c)
		if m == nil || c.System || !gone[connKey(c)] {
			continue
		}
		if err := r.kick(ctx, byID, c, phase, m.Name, fmt.Sprintf("cid %d, round %s", c.CID, round)); err != nil {
			return "", err
		}
		kicked++
	}
	back, werr := r.waitBack(ctx, r.mat.members, gone, or(r.plan.Timeouts.Return, 30*time.Second))
	r.markReturned(phase, werr == nil)
	if errors.Is(werr, errNotBack) {
		_ = r.j.Write(step, StepFailed, back, nil)
		return "", fmt.Errorf("rotation: %w: kick round %s: member(s) did not come back, so they do not trust the servers' certificates (check their roots_file): %s", ErrPhaseFailed, round, back)
	}
	if werr != nil {
		return "", werr
	}
	obs := fmt.Sprintf("kick round %s: %d connection(s) kicked; %s", round, kicked, back)
	if err := r.j.Write(step, StepDone, obs, nil); err != nil {
		return "", err
	}
	return obs, nil
}

// errNotBack: members did not reconnect in time.
var errNotBack = errors.New("members not back")

// waitBack waits until each member in ms has as many connections as it
// has replicas, none of them in gone, on every server's view; it returns
// what it saw last.
func (r *Runner) waitBack(ctx context.Context, ms []*memberState, gone map[string]bool, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := r.look(ctx, ms)
		var pending []string
		if err == nil {
			fresh := map[*memberState]int{}
			for i := range st.Connections {
				c := &st.Connections[i]
				if m := r.memberOf(c); m != nil && !c.System && !gone[connKey(c)] {
					fresh[m]++
				}
			}
			for _, m := range ms {
				if fresh[m] < m.Replicas {
					pending = append(pending, fmt.Sprintf("%s (%d of %d connection(s) back)", m.Name, fresh[m], m.Replicas))
				}
			}
			if len(pending) == 0 {
				return fmt.Sprintf("%d member(s) back on new connections in the view of %d server(s)", len(ms), len(st.Servers)), nil
			}
		}
		if time.Now().After(deadline) || !sleep(ctx, r.poll) {
			if perr := r.parentDone(ctx); perr != nil {
				return "", perr
			}
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d of %d member(s) not back within %s: %s", len(pending), len(ms), timeout, strings.Join(pending, ", ")), errNotBack
		}
	}
}

// connKey identifies a connection across looks.
func connKey(c *fleet.Connection) string { return fmt.Sprintf("%s/%d", c.ServerID, c.CID) }

// connsOf lists the keys of m's connections in st.
func (r *Runner) connsOf(st *fleet.Status, m *memberState) []string {
	var out []string
	for i := range st.Connections {
		if c := &st.Connections[i]; !c.System && r.memberOf(c) == m {
			out = append(out, connKey(c))
		}
	}
	sort.Strings(out)
	return out
}

// backupRoots keeps a copy of a member's roots file, once, for abort; a
// file that cannot be read (remote) is restored from material.server_ca.
func (r *Runner) backupRoots(m *memberState) error {
	path := r.rootsBackup(m)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := os.ReadFile(m.RootsFile)
	if err != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("rotation: backup roots of %s: %w", m.Name, err)
	}
	if err := pki.WriteFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("rotation: backup roots of %s: %w", m.Name, err)
	}
	return nil
}

func (r *Runner) rootsBackup(m *memberState) string {
	return filepath.Join(r.plan.stateDir(), "members", safeName(m.Name), "roots.pem")
}

// backupServerCert keeps a copy of a server's certificate and key, once,
// for abort. A pair that cannot be read back (remote) is not kept; abort
// then asks for it to be restored by hand.
func (r *Runner) backupServerCert(ctx context.Context, s Server) error {
	dir := filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "old")
	if _, err := readMinted(dir); err == nil {
		return nil
	}
	c, err := s.ReadServerCert(ctx)
	if err != nil {
		return fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	k, err := s.ReadServerKey(ctx)
	if err != nil {
		return fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	if len(c) == 0 || len(k) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("rotation: backup: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "key.pem"), k, 0o600); err != nil {
		return fmt.Errorf("rotation: backup: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "cert.pem"), c, 0o644); err != nil {
		return fmt.Errorf("rotation: backup: %w", err)
	}
	return nil
}

// rollbackServerCA undoes a server CA rotation that has not begun to
// remove the old server CA from the members' roots: every server gets its
// old certificate back (members trust old+new, so none is cut off) and is
// observed presenting it; then the members' roots go back to what they
// were, observed as on the way in. Past that point the old server CA may
// be gone from the members' roots, and the servers stay where they are.
func (r *Runner) rollbackServerCA(ctx context.Context) (string, error) {
	switch {
	case r.plan.Material.NewServerCA == "" || r.j.State("phase:"+PhaseServerRoots) == "":
		return "", nil
	case r.j.State("phase:"+PhaseServerRootsNew) != "":
		return "server CA rotation left as is: the old server CA may have left the members' roots", nil
	}
	var notes []string
	if r.j.State("phase:"+PhaseServerCerts) != "" {
		loads, err := r.loadTimes(ctx)
		if err != nil {
			return "", err
		}
		want := map[string]*x509.Certificate{}
		for _, s := range r.servers {
			f, err := readMinted(filepath.Join(r.plan.stateDir(), "servers", safeName(s.Name()), "old"))
			if err != nil {
				return "", fmt.Errorf("rotation: %w: no backup of the old certificate of %s (remote files are not read back): put it back and reload by hand, then abort again", ErrPhaseFailed, s.Name())
			}
			leaf, err := leafOf(f)
			if err != nil {
				return "", err
			}
			want[s.Name()] = leaf.Cert
			if err := r.putServerCert(ctx, PhaseAbort, s, f.CertPEM, f.KeyPEM); err != nil {
				return "", err
			}
		}
		obs, err := r.waitServerCerts(ctx, loads, want)
		if err != nil {
			return "", err
		}
		notes = append(notes, "old server certificates restored: "+obs)
	}
	// Each member's roots go back to its own backup, or to the old server
	// CA when its file could not be read.
	back := func(m *memberState) []byte {
		if b, err := os.ReadFile(r.rootsBackup(m)); err == nil {
			return b
		}
		return r.mat.oldServerCA
	}
	rd := rootsRound{name: "abort", phase: PhaseAbort, roots: back, want: r.mat.oldServerFPs, drop: r.mat.newServerFPs}
	obs, err := r.setRoots(ctx, rd, func(m *memberState) bool { return r.j.State("roots:both:"+m.Name) != "" })
	if err != nil {
		return "", err
	}
	notes = append(notes, "members' roots restored: "+obs)
	return strings.Join(notes, "; "), nil
}
