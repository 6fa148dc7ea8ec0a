package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// The rotation observes the fleet only through package fleet: one source
// over every server's monitoring endpoint, and an observer per question
// (a wave's members, every member, the way back on abort).

// expect is how fleet recognises m: by connection name, or by its
// leaves' fingerprints with as many connections as it has replicas.
func (m *memberState) expect() fleet.Member {
	if m.Match != MatchFingerprint {
		return fleet.Member{Name: m.Name}
	}
	fm := fleet.Member{Count: m.Replicas}
	for _, fp := range []string{m.OldCertSHA256, m.NewCertSHA256} {
		if fp != "" {
			fm.Fingerprints = append(fm.Fingerprints, fp)
		}
	}
	return fm
}

// leafMaterial is every leaf of one generation: the members' and the
// probe's, for fleet to classify connections by.
func leafMaterial(probe []byte, members []*memberState, old bool) *fleet.Material {
	m := fleet.NewMaterial()
	add := func(pemBytes []byte) {
		if certs, err := pki.ParseCertificates(pemBytes); err == nil && len(certs) > 0 {
			m.Add(certs[0])
		}
	}
	add(probe)
	for _, ms := range members {
		switch {
		case !old:
			add(ms.newFiles.CertPEM)
		case ms.oldFiles != nil:
			add(ms.oldFiles.CertPEM)
		}
	}
	return m
}

// observer asks fleet about ms only: on new material (back: on old, for
// abort), stable for settle.
func (r *Runner) observer(ms []*memberState, back bool, settle time.Duration) (*fleet.Observer, error) {
	old, cur := r.mat.oldLeaves, r.mat.newLeaves
	if back {
		old, cur = cur, old
	}
	opts := []fleet.Option{fleet.WithOld(old), fleet.WithNew(cur), fleet.WithSettle(settle),
		fleet.WithInterval(r.poll), fleet.WithExpectedOnly(), fleet.WithExpectServers(len(r.servers))}
	for _, m := range ms {
		opts = append(opts, fleet.WithExpectMembers(m.expect()))
	}
	obs, err := fleet.New(r.src, opts...)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	return obs, nil
}

// look is one view of ms, settled or not.
func (r *Runner) look(ctx context.Context, ms []*memberState) (*fleet.Status, error) {
	obs, err := r.observer(ms, false, 0)
	if err != nil {
		return nil, err
	}
	st, err := obs.Poll(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	if len(st.MissingServers) > 0 {
		return st, fmt.Errorf("rotation: %w: %s", ErrIncomplete, strings.Join(st.Reasons, "; "))
	}
	return st, nil
}

// errNotOnNew: the members did not reach the wanted material in time.
var errNotOnNew = errors.New("members not on the wanted material")

// waitMembers waits until every member in ms presents new material on
// every server, settled; it returns what it saw last.
func (r *Runner) waitMembers(ctx context.Context, ms []*memberState, timeout, settle time.Duration) (string, error) {
	return r.waitState(ctx, ms, false, timeout, settle)
}

// waitOld is waitMembers for the way back: every member on old material.
func (r *Runner) waitOld(ctx context.Context, ms []*memberState, timeout, settle time.Duration) (string, error) {
	return r.waitState(ctx, ms, true, timeout, settle)
}

func (r *Runner) waitState(ctx context.Context, ms []*memberState, back bool, timeout, settle time.Duration) (string, error) {
	obs, err := r.observer(ms, back, settle)
	if err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := obs.Wait(wctx, nil)
	if err == nil {
		return describeMembers(st, ms, fmt.Sprintf("settled %s", st.StableFor.Round(time.Millisecond))), nil
	}
	if perr := r.parentDone(ctx); perr != nil {
		return "", perr
	}
	// A member unseen is a member not back: the gate's, not the view's.
	// Any other incomplete view (a server unread, scans that never
	// agreed) showed nothing wrong: it could not be seen.
	if st == nil || len(st.MissingServers) > 0 || st.Verdict == fleet.Incomplete && len(st.MissingMembers) == 0 {
		return "", fmt.Errorf("rotation: %w: no complete view within %s: %w", ErrIncomplete, timeout, err)
	}
	return describeMembers(st, ms, "not settled within "+timeout.String()), errNotOnNew
}

// parentDone tells a timeout of the wait from the run's own end.
func (r *Runner) parentDone(ctx context.Context) error {
	if ctx.Err() != nil || r.runCtx != nil && r.runCtx.Err() != nil {
		return fmt.Errorf("rotation: %w: %w", ErrInterrupted, context.Cause(ctx))
	}
	return nil
}

// describeMembers names the members of ms not as wanted in st. fleet keeps
// the expected members in the order given, so st.Expected[i] is ms[i].
func describeMembers(st *fleet.Status, ms []*memberState, tail string) string {
	var parts []string
	for i, m := range ms {
		if i >= len(st.Expected) {
			break
		}
		e := st.Expected[i]
		if e.Seen >= m.Replicas && e.Counts.New == e.Seen {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (seen %d of %d: new=%d old=%d other=%d)", m.Name, e.Seen, m.Replicas,
			e.Counts.New, e.Counts.Old, e.Counts.Unknown+e.Counts.None))
	}
	servers := len(st.Servers)
	if len(parts) == 0 {
		return fmt.Sprintf("%d member(s) as wanted in the view of %d server(s); %s", len(ms), servers, tail)
	}
	return fmt.Sprintf("%d of %d member(s) not as wanted: %s; %s", len(parts), len(ms), strings.Join(parts, ", "), tail)
}

// onNew reports whether the i-th expected member of st presents new
// material only, on all its replicas.
func onNew(st *fleet.Status, i int, m *memberState) bool {
	if i >= len(st.Expected) {
		return false
	}
	e := st.Expected[i]
	return e.Seen >= m.Replicas && e.Counts.New == e.Seen
}

// memberOf finds the plan member a connection belongs to: by name, or by
// the leaf it presents; nil when it is none of theirs.
func (r *Runner) memberOf(c *fleet.Connection) *memberState {
	for _, m := range r.mat.members {
		if m.Match == MatchFingerprint {
			if c.CertSHA256 != "" && (c.CertSHA256 == m.OldCertSHA256 || c.CertSHA256 == m.NewCertSHA256) {
				return m
			}
		} else if c.Name != "" && c.Name == m.Name {
			return m
		}
	}
	return nil
}

// stale reports whether c must not survive a revoke: it presents old
// material, or it is a member's and presents anything but new; with
// pinned_certs, any leaf that is not pinned.
func (r *Runner) stale(c *fleet.Connection) bool {
	if c.System {
		return false
	}
	if r.mat.pinned {
		return !r.mat.pins[c.SPKISHA256]
	}
	if c.Class == fleet.ClassOld {
		return true
	}
	return c.Class != fleet.ClassNew && r.memberOf(c) != nil
}

// serverByID maps the server ids of st to the rotation's servers, by
// monitoring URL (the fleet source's key) or by name.
func (r *Runner) serverByID(st *fleet.Status) map[string]Server {
	out := map[string]Server{}
	for _, fs := range st.Servers {
		for _, s := range r.servers {
			if fs.Key == s.MonitorURL() || fs.Name == s.Name() {
				out[fs.ID] = s
				break
			}
		}
	}
	return out
}

// identities reads every server's varz through fleet, by rotation server
// name; a server that did not answer is an error.
func (r *Runner) identities(ctx context.Context) (map[string]fleet.Server, error) {
	obs, err := fleet.New(r.src)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	srvs, err := obs.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: %w", ErrIncomplete, err)
	}
	out := map[string]fleet.Server{}
	var errs []string
	for _, fs := range srvs {
		for _, s := range r.servers {
			if fs.Key == s.MonitorURL() {
				if !fs.Answered {
					errs = append(errs, fmt.Sprintf("%s: %s", s.Name(), fs.Error))
					continue
				}
				out[s.Name()] = fs
			}
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("rotation: %w: %s", ErrIncomplete, strings.Join(errs, "; "))
	}
	return out, nil
}
