package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/report"
)

func writeSavedReport(t *testing.T) string {
	t.Helper()
	start := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	r := &report.Report{
		Kind: "drill", StartedAt: start, FinishedAt: start.Add(20 * time.Second),
		OK: true, OldCertRejected: true,
		Phases: []report.Phase{
			{Name: "preflight", Start: start, End: start.Add(2 * time.Second), DurationMS: 2000, OK: true},
			{Name: "proof", Start: start.Add(18 * time.Second), End: start.Add(20 * time.Second), DurationMS: 2000, OK: true},
		},
		Timeline: []report.Sample{{T: 0, Old: 3}, {T: 10_000, Old: 1, New: 2, MsgRate: 30}, {T: 20_000, New: 3, MsgRate: 31.5}},
	}
	dir := t.TempDir()
	if err := report.WriteFiles(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, report.HTMLFile)); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, report.JSONFile)
}

func TestReportCommand(t *testing.T) {
	saved := writeSavedReport(t)

	code, out, errOut := runCLI(t, "report", saved)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	page := filepath.Join(filepath.Dir(saved), report.HTMLFile)
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatalf("no page next to the JSON: %v", err)
	}
	if !strings.Contains(string(b), report.Proven) || strings.Count(string(b), `class="sample"`) != 3 {
		t.Error("page does not show the saved report")
	}
	if !strings.Contains(out, "wrote "+page) || !strings.Contains(out, "verdict: ok: "+report.Proven) {
		t.Errorf("output:\n%s", out)
	}

	other := filepath.Join(t.TempDir(), "drill.html")
	if code, _, errOut := runCLI(t, "report", saved, "-o", other); code != exitOK {
		t.Fatalf("-o: exit %d, stderr %s", code, errOut)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("-o: %v", err)
	}

	code, out, _ = runCLI(t, "report", saved, "-o", "-")
	if code != exitOK || !strings.HasPrefix(out, "<!DOCTYPE html>") {
		t.Errorf("-o -: exit %d, output starts %.40q", code, out)
	}
}

func TestReportCommandUsage(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	notReport := filepath.Join(dir, "other.json")
	if err := os.WriteFile(notReport, []byte(`{"hello":"world"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no file":           {"report"},
		"two files":         {"report", garbage, notReport},
		"missing file":      {"report", filepath.Join(dir, "missing.json")},
		"invalid JSON":      {"report", garbage},
		"not a report":      {"report", notReport},
		"unwritable output": {"report", writeSavedReport(t), "-o", filepath.Join(dir, "no", "such", "dir", "r.html")},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d (stderr %s)", name, code, exitUsage, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, report.HTMLFile)); err == nil {
		t.Error("a page was written for invalid input")
	}
}
