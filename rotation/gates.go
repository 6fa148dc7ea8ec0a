package rotation

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// view is every server's connections at one moment. A server that could
// not be read makes the view incomplete: nothing can be concluded from it.
type view struct {
	at    time.Time
	conns []Conn
	errs  []error
}

func (v view) complete() bool { return len(v.errs) == 0 }

func (v view) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return fmt.Errorf("rotation: %w: %w", ErrIncomplete, errors.Join(v.errs...))
}

// observe reads connz from every server at once.
func (r *Runner) observe(ctx context.Context) view {
	v := view{at: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range r.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := s.Connz(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				v.errs = append(v.errs, err)
				return
			}
			v.conns = append(v.conns, cs...)
		}()
	}
	wg.Wait()
	sort.Slice(v.conns, func(i, j int) bool {
		if v.conns[i].Server != v.conns[j].Server {
			return v.conns[i].Server < v.conns[j].Server
		}
		return v.conns[i].CID < v.conns[j].CID
	})
	return v
}

// memberView is one member's connections, by material.
type memberView struct {
	New, Old, Other []Conn
}

// onNew: the member presents new material, as many times as it has
// replicas, and nothing else.
func (mv memberView) onNew(m *memberState) bool {
	return len(mv.New) >= m.Replicas && len(mv.Old) == 0 && len(mv.Other) == 0
}

// onOld: the member presents its old material again, and nothing else.
func (mv memberView) onOld(m *memberState) bool {
	return len(mv.Old) >= m.Replicas && len(mv.New) == 0 && len(mv.Other) == 0
}

func (mv memberView) String() string {
	return fmt.Sprintf("new=%d old=%d other=%d", len(mv.New), len(mv.Old), len(mv.Other))
}

// of finds m's connections in the view: by name, or by fingerprint.
func (v view) of(m *memberState) memberView {
	var mv memberView
	for _, c := range v.conns {
		switch m.Match {
		case MatchFingerprint:
			switch c.CertSHA256 {
			case m.NewCertSHA256:
				mv.New = append(mv.New, c)
			case m.OldCertSHA256:
				mv.Old = append(mv.Old, c)
			}
		default:
			if c.Name != m.Name {
				continue
			}
			switch {
			case c.CertSHA256 == m.NewCertSHA256:
				mv.New = append(mv.New, c)
			case c.CertSHA256 == m.OldCertSHA256 || m.OldCertSHA256 == "":
				mv.Old = append(mv.Old, c)
			default:
				mv.Other = append(mv.Other, c)
			}
		}
	}
	return mv
}

// signature identifies the members' connections, to tell a settled view
// from one still moving.
func (v view) signature(ms []*memberState) string {
	var b strings.Builder
	for _, m := range ms {
		mv := v.of(m)
		for _, group := range [][]Conn{mv.New, mv.Old, mv.Other} {
			for _, c := range group {
				fmt.Fprintf(&b, "%s/%d/%s;", c.Server, c.CID, c.CertSHA256)
			}
		}
		b.WriteByte('|')
	}
	return b.String()
}

// waitMembers polls until every member in ms is on new material and the
// view has not changed for settle; it returns what it saw last.
func (r *Runner) waitMembers(ctx context.Context, ms []*memberState, timeout, settle time.Duration) (string, error) {
	return r.waitState(ctx, ms, timeout, settle, memberView.onNew)
}

// waitOld is waitMembers for the way back: every member on old material.
func (r *Runner) waitOld(ctx context.Context, ms []*memberState, timeout, settle time.Duration) (string, error) {
	return r.waitState(ctx, ms, timeout, settle, memberView.onOld)
}

func (r *Runner) waitState(ctx context.Context, ms []*memberState, timeout, settle time.Duration, want func(memberView, *memberState) bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		since   time.Time
		lastSig string
		last    view
	)
	for {
		v := r.observe(ctx)
		if v.complete() {
			last = v
			ok := true
			for _, m := range ms {
				if !want(v.of(m), m) {
					ok = false
				}
			}
			sig := v.signature(ms)
			switch {
			case !ok:
				since, lastSig = time.Time{}, ""
			case sig != lastSig || since.IsZero():
				since, lastSig = v.at, sig
			case v.at.Sub(since) >= settle:
				return describeMembers(v, ms, want, fmt.Sprintf("settled %s", v.at.Sub(since).Round(time.Millisecond))), nil
			}
		}
		select {
		case <-ctx.Done():
			if err := r.parentDone(ctx); err != nil {
				return "", err
			}
			if !v.complete() {
				return "", fmt.Errorf("rotation: %w: after %s: %w", ErrIncomplete, timeout, v.err())
			}
			if last.at.IsZero() {
				return "", fmt.Errorf("rotation: %w: no complete view within %s", ErrIncomplete, timeout)
			}
			return describeMembers(last, ms, want, "not settled within "+timeout.String()), errNotOnNew
		case <-time.After(r.poll):
		}
	}
}

var errNotOnNew = errors.New("members not on the wanted material")

// parentDone tells a timeout of the wait from the run's own end.
func (r *Runner) parentDone(ctx context.Context) error {
	if r.runCtx != nil && r.runCtx.Err() != nil {
		return fmt.Errorf("rotation: %w: %w", ErrInterrupted, context.Cause(r.runCtx))
	}
	return nil
}

func describeMembers(v view, ms []*memberState, want func(memberView, *memberState) bool, tail string) string {
	var parts []string
	notNew := 0
	for _, m := range ms {
		mv := v.of(m)
		if !want(mv, m) {
			notNew++
			parts = append(parts, fmt.Sprintf("%s (%s, replicas %d)", m.Name, mv, m.Replicas))
		}
	}
	if notNew == 0 {
		return fmt.Sprintf("%d member(s) as wanted in the view of all servers; %s", len(ms), tail)
	}
	return fmt.Sprintf("%d of %d member(s) not as wanted: %s; %s", notNew, len(ms), strings.Join(parts, ", "), tail)
}

func countServers(v view) int {
	seen := map[string]bool{}
	for _, c := range v.conns {
		seen[c.Server] = true
	}
	return len(seen)
}

// DefaultLogPatterns are the log gate's patterns when the plan gives none:
// the lines operators grep for between waves today. tls and auth are
// limited by gates.max_failures; the others are counted and reported.
func DefaultLogPatterns(maxFailures int) []LogPattern {
	unlimited := -1
	return []LogPattern{
		{Name: "tls", Regexp: `(?i)(tls: |x509: |bad certificate|unknown certificate authority|certificate required|certificate (has )?expired)`, Max: &maxFailures},
		{Name: "auth", Regexp: `(?i)(authorization violation|authentication (error|expired|revoked))`, Max: &maxFailures},
		{Name: "disconnected", Regexp: `(?i)disconnected from nats`, Max: &unlimited},
		{Name: "reconnected", Regexp: `(?i)reconnected to nats`, Max: &unlimited},
	}
}

// logSource is where a member's log is read for a wave.
func (r *Runner) logFile(m *memberState) (string, error) {
	if m.Log != "" {
		return m.Log, nil
	}
	lg := m.workload.Gates.Log
	if lg == nil || lg.File == "" {
		return "", nil
	}
	f, err := expand(lg.File, map[string]any{"Member": m.Name, "Workload": m.Workload})
	if err != nil {
		return "", err
	}
	return r.plan.path(f), nil
}

// logOffsets records where each member's log ends now, so that the gate
// counts only lines written since the wave began.
func (r *Runner) logOffsets(ms []*memberState) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		f, err := r.logFile(m)
		if err != nil || f == "" {
			continue
		}
		var size int64
		if st, err := os.Stat(f); err == nil {
			size = st.Size()
		}
		out["log:"+m.Name] = strconv.FormatInt(size, 10)
	}
	return out
}

// countLogs counts pattern matches in the members' logs since the wave
// began and says which limits were exceeded.
func (r *Runner) countLogs(ctx context.Context, w *Workload, ms []*memberState, offsets map[string]string, since time.Time) (map[string]int, []string, error) {
	lg := w.Gates.Log
	hasLogs := lg != nil && (lg.File != "" || lg.Command != nil)
	for _, m := range ms {
		if m.Log != "" {
			hasLogs = true
		}
	}
	if !hasLogs {
		return nil, nil, nil
	}
	patterns := DefaultLogPatterns(w.Gates.MaxFailures)
	if lg != nil && len(lg.Patterns) > 0 {
		patterns = lg.Patterns
	}
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(p.Regexp) // checked by Validate
	}
	counts := map[string]int{}
	for _, p := range patterns {
		counts[p.Name] = 0
	}
	count := func(rd io.Reader) {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			for i, re := range res {
				if re.Match(sc.Bytes()) {
					counts[patterns[i].Name]++
				}
			}
		}
	}
	for _, m := range ms {
		if lg != nil && lg.Command != nil && m.Log == "" {
			out, err := runCommand(ctx, lg.Command, map[string]any{
				"Member": m.Name, "Workload": m.Workload, "Since": since.UTC().Format(time.RFC3339),
			})
			if err != nil {
				return nil, nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
			}
			count(strings.NewReader(string(out)))
			continue
		}
		f, err := r.logFile(m)
		if err != nil || f == "" {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			return nil, nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
		}
		off, _ := strconv.ParseInt(offsets["log:"+m.Name], 10, 64)
		if st, err := fh.Stat(); err == nil && st.Size() < off {
			off = 0 // the log was rotated or truncated since
		}
		_, _ = fh.Seek(off, io.SeekStart)
		count(fh)
		fh.Close()
	}
	var over []string
	for _, p := range patterns {
		max := 0
		if p.Max != nil {
			max = *p.Max
		}
		if max >= 0 && counts[p.Name] > max {
			over = append(over, fmt.Sprintf("%d %q line(s), at most %d allowed", counts[p.Name], p.Name, max))
		}
	}
	return counts, over, nil
}

// runChecks runs the wave's check commands; each must exit 0.
func (r *Runner) runChecks(ctx context.Context, w *Workload, wave int, ms []*memberState) error {
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	for i := range w.Gates.Checks {
		if _, err := runCommand(ctx, &w.Gates.Checks[i], map[string]any{
			"Workload": w.Name, "Wave": wave, "Members": strings.Join(names, " "),
		}); err != nil {
			return fmt.Errorf("check %d: %w", i+1, err)
		}
	}
	return nil
}
