package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/natscert/natscert/report"
)

// A small drill through the CLI: exit 0, a summary, and a report.json
// carrying the keys scripts read.
func TestDrillCommand(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, "drill", "--clients", "8", "--servers", "2", "--rate", "400",
		"--request-rate", "20", "--waves", "2", "--steady", "300ms", "--pause", "100ms", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "lost messages") || !strings.Contains(stderr, "every promise held") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	r, err := report.ReadJSON(filepath.Join(out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != "drill" || !r.OK || !r.OldCertRejected || r.Lost.Messages != 0 || r.Lost.Requests != 0 || len(r.Members) != 8 {
		t.Fatalf("report: kind %q ok %v old_cert_rejected %v lost %+v members %d", r.Kind, r.OK, r.OldCertRejected, r.Lost, len(r.Members))
	}
}

func TestDrillCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"drill", "--strategy", "hope"},
		{"drill", "--clients", "-3"},
		{"drill", "extra"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %s)", args, code, exitUsage, stderr)
		}
	}
}
