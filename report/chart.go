package report

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// The timeline chart is drawn in viewBox units; the page scales it to its
// width. Three panels share the time axis: connections by material,
// message rate, failures. Phases are bands across all three.
const (
	chartW      = 1120.0
	chartLeft   = 56.0
	chartRight  = 16.0
	chartTop    = 40.0 // room for phase labels
	panelConnH  = 210.0
	panelRateH  = 80.0
	panelFailH  = 46.0
	panelGap    = 30.0 // room for a panel title
	chartBottom = 28.0 // time axis labels
	plotW       = chartW - chartLeft - chartRight
	// dotsUpTo is the number of samples up to which every point shows a dot;
	// above it dots show on hover only.
	dotsUpTo = 120
)

// band is a phase or a wave placed on the time axis, in milliseconds since
// the start of the run.
type band struct {
	index      int
	label      string
	start, end int64
	ok         bool
}

// timelineSVG draws r's timeline with phase bands as inline SVG. Every
// sample is a <g class="sample"> carrying its figures in data attributes
// (data-t, data-old, data-new, data-unknown, data-rate, data-failures),
// exactly as they are in report.json.
func timelineSVG(r *Report, base timeBase) template.HTML {
	if len(r.Timeline) == 0 {
		return ""
	}
	end := base.end
	for _, s := range r.Timeline {
		end = max(end, s.T)
	}
	if end <= 0 {
		end = 1
	}
	x := func(ms int64) float64 {
		return chartLeft + plotW*float64(clamp(ms, 0, end))/float64(end)
	}

	connTop := chartTop
	rateTop := connTop + panelConnH + panelGap
	failTop := rateTop + panelRateH + panelGap
	plotBottom := failTop + panelFailH
	height := plotBottom + chartBottom

	var maxConn, maxFail float64
	var maxRate float64
	hasUnknown := false
	for _, s := range r.Timeline {
		maxConn = max(maxConn, float64(s.Old), float64(s.New), float64(s.Unknown))
		maxRate = max(maxRate, s.MsgRate)
		maxFail = max(maxFail, float64(s.Failures))
		hasUnknown = hasUnknown || s.Unknown > 0
	}
	connMax, connStep := niceCeil(maxConn, 5)
	rateMax, rateStep := niceCeil(maxRate, 2)
	failMax, failStep := niceCeil(maxFail, 1)
	yConn := func(v float64) float64 { return connTop + panelConnH*(1-v/connMax) }
	yRate := func(v float64) float64 { return rateTop + panelRateH*(1-v/rateMax) }
	yFail := func(v float64) float64 { return failTop + panelFailH*(1-v/failMax) }

	var b strings.Builder
	class := "timeline"
	if len(r.Timeline) <= dotsUpTo {
		class += " dots"
	}
	fmt.Fprintf(&b, `<svg class="%s" viewBox="0 0 %s %s" role="img" aria-labelledby="timeline-title" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" data-end="%d">`,
		class, num(chartW), num(height), end)
	b.WriteString(`<title id="timeline-title">Connections presenting old and new material, message rate and failures over time, with the rotation's phases as bands</title>`)

	// Phase bands, behind everything.
	b.WriteString(`<g class="phases">`)
	for i, p := range base.phases {
		if p.start < 0 {
			continue
		}
		pe := p.end
		if pe < p.start {
			pe = end
		}
		x0, x1 := x(p.start), x(pe)
		cls := "band"
		if i%2 == 1 {
			cls += " alt"
		}
		if !p.ok {
			cls += " failed"
		}
		fmt.Fprintf(&b, `<g class="%s" data-phase="%s" data-start="%d" data-end="%d">`, cls, esc(p.label), p.start, pe)
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s"/>`, num(x0), num(chartTop-22), num(math.Max(x1-x0, 0.5)), num(plotBottom-chartTop+22))
		fmt.Fprintf(&b, `<line class="edge" x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(x0), num(x0), num(chartTop-22), num(plotBottom))
		if label := fitLabel(p.index, p.label, x1-x0); label != "" {
			fmt.Fprintf(&b, `<text class="band-label" x="%s" y="%s">%s</text>`, num(x0+5), num(chartTop-9), esc(label))
		}
		fmt.Fprintf(&b, `<title>%d. %s: %s to %s (%s)</title></g>`, p.index, esc(p.label), clock(p.start), clock(pe), humanDuration(pe-p.start))
	}
	b.WriteString(`</g>`)

	// Grid and axes.
	b.WriteString(`<g class="grid">`)
	tstep := timeStep(end, 10)
	for t := int64(0); t <= end; t += tstep {
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(x(t)), num(x(t)), num(connTop), num(plotBottom))
	}
	for v := 0.0; v <= connMax+connStep/2; v += connStep {
		hline(&b, yConn(v), num(v))
	}
	for v := 0.0; v <= rateMax+rateStep/2; v += rateStep {
		hline(&b, yRate(v), rate(v))
	}
	for v := 0.0; v <= failMax+failStep/2; v += failStep {
		hline(&b, yFail(v), num(v))
	}
	b.WriteString(`</g><g class="axis">`)
	for t := int64(0); t <= end; t += tstep {
		fmt.Fprintf(&b, `<text class="tick-x" x="%s" y="%s">%s</text>`, num(x(t)), num(plotBottom+18), axisTime(t, tstep))
	}
	fmt.Fprintf(&b, `<text class="panel-title" x="%s" y="%s">Connections by material presented</text>`, num(chartLeft), num(connTop-28+0.5))
	fmt.Fprintf(&b, `<text class="panel-title" x="%s" y="%s">Messages delivered per second</text>`, num(chartLeft), num(rateTop-10))
	fmt.Fprintf(&b, `<text class="panel-title" x="%s" y="%s">TLS, auth and request failures</text>`, num(chartLeft), num(failTop-10))
	b.WriteString(`</g>`)

	// Wave starts, as thin marks in the connections panel.
	b.WriteString(`<g class="waves">`)
	for _, w := range base.waves {
		if w.start < 0 {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%s" y2="%s"/>`, num(x(w.start)), num(x(w.start)), num(connTop), num(connTop+panelConnH))
		fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text>`, num(x(w.start)+4), num(connTop+13), esc(w.label))
	}
	b.WriteString(`</g>`)

	// Series.
	var old, nw, unk, rt strings.Builder
	for i, s := range r.Timeline {
		if i > 0 {
			old.WriteByte(' ')
			nw.WriteByte(' ')
			unk.WriteByte(' ')
			rt.WriteByte(' ')
		}
		xs := num(x(s.T))
		fmt.Fprintf(&old, "%s,%s", xs, num(yConn(float64(s.Old))))
		fmt.Fprintf(&nw, "%s,%s", xs, num(yConn(float64(s.New))))
		fmt.Fprintf(&unk, "%s,%s", xs, num(yConn(float64(s.Unknown))))
		fmt.Fprintf(&rt, "%s,%s", xs, num(yRate(s.MsgRate)))
	}
	first, last := num(x(r.Timeline[0].T)), num(x(r.Timeline[len(r.Timeline)-1].T))
	connBase, rateBase := num(yConn(0)), num(yRate(0))
	fmt.Fprintf(&b, `<polygon class="area old" points="%s,%s %s %s,%s"/>`, first, connBase, old.String(), last, connBase)
	fmt.Fprintf(&b, `<polygon class="area new" points="%s,%s %s %s,%s"/>`, first, connBase, nw.String(), last, connBase)
	fmt.Fprintf(&b, `<polygon class="area rate" points="%s,%s %s %s,%s"/>`, first, rateBase, rt.String(), last, rateBase)
	if hasUnknown {
		fmt.Fprintf(&b, `<polyline class="line unknown" points="%s"/>`, unk.String())
	}
	fmt.Fprintf(&b, `<polyline class="line old" points="%s"/>`, old.String())
	fmt.Fprintf(&b, `<polyline class="line new" points="%s"/>`, nw.String())
	fmt.Fprintf(&b, `<polyline class="line rate" points="%s"/>`, rt.String())

	// Failure bars.
	bw := math.Max(1.5, math.Min(10, plotW/float64(len(r.Timeline))*0.6))
	b.WriteString(`<g class="failures">`)
	for _, s := range r.Timeline {
		if s.Failures <= 0 {
			continue
		}
		y := yFail(float64(s.Failures))
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s"/>`, num(x(s.T)-bw/2), num(y), num(bw), num(failTop+panelFailH-y))
	}
	b.WriteString(`</g>`)

	// One group per sample: its figures as data attributes, its dots, and
	// a hover target the width of its slot with a native tooltip.
	b.WriteString(`<g class="samples">`)
	for i, s := range r.Timeline {
		lo, hi := x(s.T), x(s.T)
		if i > 0 {
			lo = (x(r.Timeline[i-1].T) + x(s.T)) / 2
		}
		if i < len(r.Timeline)-1 {
			hi = (x(s.T) + x(r.Timeline[i+1].T)) / 2
		}
		if hi-lo < 2 {
			lo, hi = x(s.T)-1, x(s.T)+1
		}
		xs := num(x(s.T))
		fmt.Fprintf(&b, `<g class="sample" data-i="%d" data-t="%d" data-old="%d" data-new="%d" data-unknown="%d" data-rate="%s" data-failures="%d">`,
			i, s.T, s.Old, s.New, s.Unknown, strconv.FormatFloat(s.MsgRate, 'f', -1, 64), s.Failures)
		fmt.Fprintf(&b, `<title>%s · old %d · new %d`, clock(s.T), s.Old, s.New)
		if s.Unknown > 0 {
			fmt.Fprintf(&b, ` · other %d`, s.Unknown)
		}
		fmt.Fprintf(&b, ` · %s msg/s · %d failure(s)</title>`, rate(s.MsgRate), s.Failures)
		fmt.Fprintf(&b, `<rect class="hit" x="%s" y="%s" width="%s" height="%s"/>`, num(lo), num(connTop), num(hi-lo), num(plotBottom-connTop))
		fmt.Fprintf(&b, `<line class="guide" x1="%s" x2="%s" y1="%s" y2="%s"/>`, xs, xs, num(connTop), num(plotBottom))
		fmt.Fprintf(&b, `<circle class="dot old" cx="%s" cy="%s" r="2.6"/>`, xs, num(yConn(float64(s.Old))))
		fmt.Fprintf(&b, `<circle class="dot new" cx="%s" cy="%s" r="2.6"/>`, xs, num(yConn(float64(s.New))))
		fmt.Fprintf(&b, `<circle class="dot rate" cx="%s" cy="%s" r="2"/>`, xs, num(yRate(s.MsgRate)))
		b.WriteString(`</g>`)
	}
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String())
}

// hline draws a horizontal grid line with its label on the left axis.
func hline(b *strings.Builder, y float64, label string) {
	fmt.Fprintf(b, `<line x1="%s" x2="%s" y1="%s" y2="%s"/><text class="tick-y" x="%s" y="%s">%s</text>`,
		num(chartLeft), num(chartW-chartRight), num(y), num(y), num(chartLeft-8), num(y+4), label)
}

// fitLabel shortens a band's label to what fits in width viewBox units.
func fitLabel(index int, label string, width float64) string {
	full := fmt.Sprintf("%d %s", index, label)
	const charW = 6.6
	switch {
	case float64(len(full))*charW+10 <= width:
		return full
	case float64(len(strconv.Itoa(index)))*charW+8 <= width:
		return strconv.Itoa(index)
	default:
		return ""
	}
}

// budgetSVG draws predicted, worst-case and actual time as bars on one
// scale, with the SLA as a line.
func budgetSVG(bg *Budget) template.HTML {
	if bg == nil {
		return ""
	}
	type bar struct {
		label, class string
		ms           int64
	}
	bars := []bar{
		{"Predicted", "predicted", bg.PredictedMS},
		{"Worst case", "worst", bg.WorstCaseMS},
		{"Actual", "actual", bg.ActualMS},
	}
	if bg.ActualMS > bg.WorstCaseMS && bg.WorstCaseMS > 0 || bg.SLAMS > 0 && bg.ActualMS > bg.SLAMS {
		bars[2].class = "actual over"
	}
	top := max(bg.PredictedMS, bg.WorstCaseMS, bg.ActualMS, bg.SLAMS)
	if top <= 0 {
		top = 1
	}
	const w, left, right, rowH = 520.0, 92.0, 96.0, 28.0
	scale := (w - left - right) / float64(top)
	h := rowH*float64(len(bars)) + 22
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="budget-chart" viewBox="0 0 %s %s" role="img" aria-label="Rotation time: predicted, worst case and actual" xmlns="http://www.w3.org/2000/svg">`, num(w), num(h))
	for i, br := range bars {
		y := float64(i)*rowH + 4
		fmt.Fprintf(&b, `<text class="bar-label" x="%s" y="%s">%s</text>`, num(left-10), num(y+14), br.label)
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="18" rx="3" data-ms="%d"/>`, br.class, num(left), num(y), num(math.Max(float64(br.ms)*scale, 1)), br.ms)
		fmt.Fprintf(&b, `<text class="bar-value" x="%s" y="%s">%s</text>`, num(left+float64(br.ms)*scale+8), num(y+14), humanDuration(br.ms))
	}
	if bg.SLAMS > 0 {
		xs := num(left + float64(bg.SLAMS)*scale)
		fmt.Fprintf(&b, `<line class="sla" x1="%s" x2="%s" y1="0" y2="%s"/><text class="sla-label" x="%s" y="%s">SLA %s</text>`,
			xs, xs, num(h-16), xs, num(h-3), humanDuration(bg.SLAMS))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// num writes a coordinate compactly: at most two decimals, no trailing zeros.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func esc(s string) string { return template.HTMLEscapeString(s) }

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
