package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natscert/natscert/report"
)

// A small drill through the CLI: exit 0, the report as JSON on stdout,
// the same report in report.json with the keys scripts read.
func TestDrillCommand(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, "drill", "--clients", "8", "--servers", "2", "--rate", "400",
		"--request-rate", "20", "--waves", "2", "--steady", "300ms", "--pause", "100ms", "--out", out, "--json")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "every promise held") || !strings.Contains(stderr, "phase server_certs observed") {
		t.Fatalf("stderr:\n%s", stderr)
	}
	var printed report.Report
	if err := json.Unmarshal([]byte(stdout), &printed); err != nil {
		t.Fatalf("stdout is not a report: %v\n%s", err, stdout)
	}
	r, err := report.ReadJSON(filepath.Join(out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != "drill" || !r.OK || !r.OldCertRejected || r.Lost.Messages != 0 || r.Lost.Requests != 0 || len(r.Members) != 8 {
		t.Fatalf("report: kind %q ok %v old_cert_rejected %v lost %+v members %d", r.Kind, r.OK, r.OldCertRejected, r.Lost, len(r.Members))
	}
	if printed.Kind != r.Kind || printed.OK != r.OK || len(printed.Phases) != len(r.Phases) || len(printed.Members) != len(r.Members) {
		t.Errorf("stdout and report.json differ: %d/%d phases, %d/%d members", len(printed.Phases), len(r.Phases), len(printed.Members), len(r.Members))
	}
}

// The help teaches: what the drill does, each strategy's promise, the
// exit codes and an example.
func TestDrillHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, "drill", "--help")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"server_certs", "swap ", "reconnect ", "restart ", "Promises zero lost messages",
		"Exit codes:", "  4  interrupted", "natscert drill --compare", "--json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestDrillCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"drill", "--strategy", "hope"},
		{"drill", "--clients", "-3"},
		{"drill", "--steady=-1s", "--waves", "500", "--clients", "2"},
		{"drill", "extra"},
		{"drill", "--out", "/dev/null/drill"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %s)", args, code, exitUsage, stderr)
		}
	}
}
