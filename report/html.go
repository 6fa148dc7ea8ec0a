package report

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

//go:embed page.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Parse(pageSource))

// ContentSecurityPolicy is the policy report.html declares in a meta tag:
// the page loads nothing from anywhere, and runs only its own inline code.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'unsafe-inline'"

// WriteHTML writes r as one self-contained HTML page: verdict, key
// figures, timeline chart, phases, waves, budget, proof and members. The
// page needs no network: styles, chart (inline SVG) and script are inline,
// and r's JSON is embedded in <script type="application/json"
// id="report-data">.
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		return errors.New("report: write html: nil report")
	}
	p, err := newPage(r)
	if err != nil {
		return err
	}
	if err := pageTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("report: write html: %w", err)
	}
	return nil
}

// timeBase places a report's times on one axis: milliseconds since start.
type timeBase struct {
	start  time.Time
	end    int64
	phases []band
	waves  []band
}

func newTimeBase(r *Report) timeBase {
	tb := timeBase{start: r.StartedAt}
	if tb.start.IsZero() && len(r.Phases) > 0 {
		tb.start = r.Phases[0].Start
	}
	tb.end = max(since(tb.start, r.FinishedAt), 0)
	for i, p := range r.Phases {
		b := band{index: i + 1, label: p.Name, start: since(tb.start, p.Start), end: since(tb.start, p.End), ok: p.OK}
		tb.end = max(tb.end, b.end)
		tb.phases = append(tb.phases, b)
	}
	for _, w := range r.Waves {
		b := band{index: w.Index, label: fmt.Sprintf("W%d", w.Index), start: since(tb.start, w.Start), end: since(tb.start, w.End), ok: w.OK}
		tb.end = max(tb.end, b.end)
		tb.waves = append(tb.waves, b)
	}
	return tb
}

// page is what the template renders; everything is worked out here so the
// template only lays it out.
type page struct {
	CSP      string
	Title    string
	Kind     string
	Subtitle string
	Verdict  Verdict
	Figures  []figure
	Chart    template.HTML
	Samples  int
	Unknown  bool
	Phases   []phaseRow
	Waves    []waveRow
	Budget   *budgetView
	Proof    []proofRow
	Members  []memberRow
	Worst    string
	Setup    []setting
	JSON     template.JS
}

type figure struct {
	Label, Value, Note string
	Tone               string // "good", "bad" or ""
}

type phaseRow struct {
	Index       int
	Name        string
	Start       string
	Duration    string
	Left, Width float64 // percent of the run, for the inline gantt bar
	OK          bool
	Observed    string
}

type waveRow struct {
	Index    int
	Workload string
	Count    int
	Members  string
	Start    string
	Duration string
	OK       bool
	Gate     string
}

type budgetView struct {
	Chart       template.HTML
	Predicted   string
	Actual      string
	Delta       string
	DeltaTone   string
	SLA         string
	Fits        bool
	Convergence *convergenceView
}

type convergenceView struct {
	Time, Floor, Rate, Ratio string
}

type proofRow struct {
	Server          string
	OldRejected     bool
	NewAccepted     bool
	OldFingerprints int
	Detail          string
}

type memberRow struct {
	Name, Server               string
	GapMS                      int64
	Gap                        string
	GapPct                     int
	LostMessages, LostRequests int64
	Duplicates, OutOfOrder     int64
	TLSFailures, Reconnects    int64
	OnNew                      bool
	Bad                        bool
}

type setting struct{ Key, Value string }

func newPage(r *Report) (*page, error) {
	js, err := json.Marshal(r) // escapes <, > and &: safe inside <script>
	if err != nil {
		return nil, fmt.Errorf("report: write html: %w", err)
	}
	tb := newTimeBase(r)
	p := &page{
		CSP:     ContentSecurityPolicy,
		Title:   r.Title,
		Kind:    kindLabel(r.Kind),
		Verdict: r.Verdict(),
		Chart:   timelineSVG(r, tb),
		Samples: len(r.Timeline),
		JSON:    template.JS(js),
	}
	if p.Title == "" {
		p.Title = "Certificate rotation " + strings.ToLower(p.Kind)
	}
	p.Subtitle = subtitle(r)
	for _, s := range r.Timeline {
		p.Unknown = p.Unknown || s.Unknown > 0
	}
	p.Figures = figures(r, tb)
	p.Phases = phaseRows(r, tb)
	p.Waves = waveRows(r, tb)
	p.Budget = newBudgetView(r)
	if r.Proof != nil {
		for _, s := range r.Proof.Servers {
			p.Proof = append(p.Proof, proofRow{s.Server, s.OldRejected, s.NewAccepted, s.OldFingerprints, s.Detail})
		}
	}
	p.Members, p.Worst = memberRows(r.Members)
	for _, k := range slices.Sorted(maps.Keys(r.Setup)) {
		p.Setup = append(p.Setup, setting{k, settingValue(r.Setup[k])})
	}
	return p, nil
}

func kindLabel(kind string) string {
	switch kind {
	case "drill":
		return "Drill"
	case "rotation":
		return "Rotation"
	case "":
		return "Run"
	default:
		return kind
	}
}

func subtitle(r *Report) string {
	var parts []string
	if !r.StartedAt.IsZero() {
		s := r.StartedAt.UTC().Format("2 Jan 2006, 15:04:05 MST")
		if !r.FinishedAt.IsZero() {
			s += " – " + r.FinishedAt.UTC().Format("15:04:05 MST")
		}
		parts = append(parts, s)
	}
	if r.Strategy != "" {
		parts = append(parts, "strategy: "+r.Strategy)
	}
	return strings.Join(parts, " · ")
}

func figures(r *Report, tb timeBase) []figure {
	var out []figure
	total := tb.end
	if r.Budget != nil && r.Budget.ActualMS > 0 {
		total = r.Budget.ActualMS
	}
	if !r.StartedAt.IsZero() && !r.FinishedAt.IsZero() {
		total = r.FinishedAt.Sub(r.StartedAt).Milliseconds()
	}
	f := figure{Label: "Duration", Value: humanDuration(total)}
	if r.Budget != nil && r.Budget.PredictedMS > 0 {
		f.Note = "predicted " + humanDuration(r.Budget.PredictedMS)
	}
	out = append(out, f)

	if n := len(r.Members); n > 0 {
		onNew, worst := 0, r.Members[0]
		var tls int64
		for _, m := range r.Members {
			if m.OnNew {
				onNew++
			}
			if m.GapMS > worst.GapMS {
				worst = m
			}
			tls += m.TLSFailures
		}
		out = append(out, figure{Label: "On new material", Value: count(int64(onNew)),
			Note: fmt.Sprintf("of %s members", count(int64(n))), Tone: tone(onNew == n)})
		out = append(out, figure{Label: "Longest gap", Value: humanDuration(worst.GapMS), Note: worst.Name})
		out = append(out, figure{Label: "TLS failures", Value: count(tls), Note: "refused handshakes"})
	}
	lost := r.Lost.Messages + r.Lost.Requests
	out = append(out, figure{Label: "Lost", Value: count(lost),
		Note: fmt.Sprintf("%s msg · %s req", count(r.Lost.Messages), count(r.Lost.Requests)), Tone: tone(lost == 0)})
	out = append(out, figure{Label: "Duplicates", Value: count(r.Duplicates), Note: count(r.OutOfOrder) + " out of order"})
	if c := r.Convergence; c != nil {
		f := figure{Label: "Convergence", Value: humanDuration(c.MS)}
		if c.FloorMS > 0 {
			f.Note = fmt.Sprintf("%.0f× the %s floor", float64(c.MS)/float64(c.FloorMS), humanDuration(c.FloorMS))
		}
		out = append(out, f)
	}
	return out
}

func tone(good bool) string {
	if good {
		return "good"
	}
	return "bad"
}

func phaseRows(r *Report, tb timeBase) []phaseRow {
	end := max(tb.end, 1)
	var out []phaseRow
	for i, ph := range r.Phases {
		b := tb.phases[i]
		row := phaseRow{Index: i + 1, Name: ph.Name, OK: ph.OK, Observed: ph.Observed,
			Duration: humanDuration(spanMS(ph.Start, ph.End, ph.DurationMS))}
		if b.start >= 0 {
			row.Start = clock(b.start)
			stop := b.end
			if stop < b.start {
				stop = end
			}
			row.Left = pct(b.start, end)
			row.Width = max(pct(stop-b.start, end), 0.4)
		}
		out = append(out, row)
	}
	return out
}

func pct(v, of int64) float64 {
	return float64(int(1000*float64(v)/float64(of))) / 10
}

func waveRows(r *Report, tb timeBase) []waveRow {
	var out []waveRow
	for i, w := range r.Waves {
		row := waveRow{Index: w.Index, Workload: w.Workload, Count: len(w.Members), OK: w.OK, Gate: w.Gate,
			Duration: humanDuration(spanMS(w.Start, w.End, w.DurationMS))}
		names := w.Members
		if len(names) > 6 {
			row.Members = strings.Join(names[:6], ", ") + fmt.Sprintf(" and %d more", len(names)-6)
		} else {
			row.Members = strings.Join(names, ", ")
		}
		if s := tb.waves[i].start; s >= 0 {
			row.Start = clock(s)
		}
		out = append(out, row)
	}
	return out
}

func newBudgetView(r *Report) *budgetView {
	bg := r.Budget
	if bg == nil && r.Convergence == nil {
		return nil
	}
	v := &budgetView{}
	if bg != nil {
		v.Chart = budgetSVG(bg)
		v.Predicted = humanDuration(bg.PredictedMS)
		v.Actual = humanDuration(bg.ActualMS)
		v.Fits = bg.Fits
		if bg.SLAMS > 0 {
			v.SLA = humanDuration(bg.SLAMS)
		}
		if bg.PredictedMS > 0 {
			d := float64(bg.ActualMS-bg.PredictedMS) / float64(bg.PredictedMS) * 100
			switch {
			case d > 0.5:
				v.Delta = fmt.Sprintf("%.0f%% over the prediction", d)
				v.DeltaTone = "bad"
				if bg.WorstCaseMS > 0 && bg.ActualMS <= bg.WorstCaseMS {
					v.Delta += ", within the worst case"
					v.DeltaTone = ""
				}
			case d < -0.5:
				v.Delta = fmt.Sprintf("%.0f%% under the prediction", -d)
				v.DeltaTone = "good"
			default:
				v.Delta = "as predicted"
				v.DeltaTone = "good"
			}
		}
	}
	if c := r.Convergence; c != nil {
		cv := &convergenceView{Time: humanDuration(c.MS), Floor: humanDuration(c.FloorMS), Rate: rate(c.HandshakesPerSecond)}
		if c.FloorMS > 0 {
			cv.Ratio = fmt.Sprintf("%.1f×", float64(c.MS)/float64(c.FloorMS))
		}
		v.Convergence = cv
	}
	return v
}

// memberRows sorts members worst first: not on new material, then lost
// messages and requests, then the longest gap, then duplicates and failures.
func memberRows(members []Member) ([]memberRow, string) {
	if len(members) == 0 {
		return nil, ""
	}
	ms := slices.Clone(members)
	slices.SortStableFunc(ms, func(a, b Member) int {
		if a.OnNew != b.OnNew {
			if !a.OnNew {
				return -1
			}
			return 1
		}
		return cmp.Or(
			cmp.Compare(b.Lost.Messages+b.Lost.Requests, a.Lost.Messages+a.Lost.Requests),
			cmp.Compare(b.GapMS, a.GapMS),
			cmp.Compare(b.Duplicates+b.OutOfOrder, a.Duplicates+a.OutOfOrder),
			cmp.Compare(b.TLSFailures, a.TLSFailures),
			strings.Compare(a.Name, b.Name),
		)
	})
	var maxGap int64 = 1
	for _, m := range ms {
		maxGap = max(maxGap, m.GapMS)
	}
	rows := make([]memberRow, 0, len(ms))
	bad := 0
	for _, m := range ms {
		row := memberRow{Name: m.Name, Server: m.Server, GapMS: m.GapMS, Gap: humanDuration(m.GapMS),
			GapPct:       int(100 * m.GapMS / maxGap),
			LostMessages: m.Lost.Messages, LostRequests: m.Lost.Requests,
			Duplicates: m.Duplicates, OutOfOrder: m.OutOfOrder,
			TLSFailures: m.TLSFailures, Reconnects: m.ReconnectAttempts, OnNew: m.OnNew,
			Bad: !m.OnNew || m.Lost.Messages+m.Lost.Requests > 0}
		if row.Bad {
			bad++
		}
		rows = append(rows, row)
	}
	note := fmt.Sprintf("%s members, worst first", count(int64(len(rows))))
	if bad > 0 {
		note += fmt.Sprintf("; %d need attention", bad)
	}
	return rows, note
}

func settingValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64, bool, int, int64:
		return fmt.Sprint(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
