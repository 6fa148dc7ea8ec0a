// Package report holds the record of a rotation or a drill and renders it
// as JSON (report.json, for scripts) and as a self-contained HTML page
// (report.html, for people), both from the same Report value.
//
//	rep := &report.Report{Kind: "drill", Strategy: "swap", ...}
//	if err := report.WriteFiles("out", rep); err != nil { ... }
package report
