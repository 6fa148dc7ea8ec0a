// Package report holds the record of a rotation or a drill and renders it
// as JSON (report.json, for scripts) and as a self-contained HTML page
// (report.html, for people), both from the same Report value.
//
// The page states the verdict first ("Old certificate rejected on every
// server; nothing lost", or the promises broken), then key figures, a
// timeline chart of connections presenting old and new material with the
// message rate, failures and phases, and tables of the proof per server,
// the phases, the budget, the waves and the members, worst first. It loads
// nothing from the network: styles, the chart (inline SVG drawn here) and
// its small script are inline, a Content-Security-Policy forbids anything
// else, and the report's JSON is embedded in
// <script type="application/json" id="report-data">. Every plotted point
// carries its figures in data attributes (data-t, data-old, data-new,
// data-unknown, data-rate, data-failures), as they are in report.json.
//
// Write both files at the end of a run:
//
//	rep := &report.Report{Kind: "drill", Strategy: "swap", StartedAt: start, ...}
//	rep.Timeline = append(rep.Timeline, report.Sample{T: 1500, Old: 70, New: 30, MsgRate: 980})
//	if err := report.WriteFiles("out", rep); err != nil {
//		return err
//	}
//	fmt.Println(rep.Verdict().Headline)
//
// Render the page again from a saved report.json (natscert report does):
//
//	rep, err := report.ReadJSON("out/report.json") // wraps ErrInvalid if it is no report
//	if err != nil {
//		return err
//	}
//	err = report.WriteHTMLFile("out/report.html", rep)
package report
