package rotation

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

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
		b, err := r.memberLog(ctx, m, offsets, since)
		if err != nil {
			return nil, nil, err
		}
		count(bytes.NewReader(b))
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

// memberLog is what m logged since the wave or step began: its log file
// from the offset recorded in offsets, or the output of the log command
// given since; nil when the member has no log.
func (r *Runner) memberLog(ctx context.Context, m *memberState, offsets map[string]string, since time.Time) ([]byte, error) {
	if lg := m.workload.Gates.Log; lg != nil && lg.Command != nil && m.Log == "" {
		out, err := runCommand(ctx, lg.Command, map[string]any{
			"Member": m.Name, "Workload": m.Workload, "Since": since.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
		}
		return out, nil
	}
	f, err := r.logFile(m)
	if err != nil || f == "" {
		return nil, nil
	}
	fh, err := os.Open(f)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
	}
	defer fh.Close()
	off, _ := strconv.ParseInt(offsets["log:"+m.Name], 10, 64)
	if st, err := fh.Stat(); err == nil && st.Size() < off {
		off = 0 // the log was rotated or truncated since
	}
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w: log of %s: %w", ErrIncomplete, m.Name, err)
	}
	return b, nil
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
