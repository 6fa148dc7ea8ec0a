package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runCLI runs natscert with args and returns the exit code and outputs.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// hasLine reports whether out holds line exactly, as one line.
func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestBudgetCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "budget", "--reconnect-wait", "2s", "--handshake-timeout", "2s", "--pods", "24", "--max-unavailable", "3")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, line := range []string{"cycle=4s wave_window=8s", "waves=8", "total=1m4s", "worst_cycle=5s worst_wave_window=10s worst_total=1m20s"} {
		if !hasLine(out, line) {
			t.Errorf("output lacks the line %q:\n%s", line, out)
		}
	}
	// The flag defaults are the same example fleet.
	if _, def, _ := runCLI(t, "budget"); def != out {
		t.Errorf("defaults differ:\n%s\nvs\n%s", def, out)
	}
}

func TestBudgetCommandVerdicts(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		line string
	}{
		{"rounds a partial wave up", []string{"--pods", "25"}, exitOK, "waves=9"},
		{"SLA met", []string{"--sla", "2m"}, exitOK, "sla=2m0s fits=true worst_fits=true"},
		{"SLA met only by the simple model", []string{"--sla", "64s"}, exitOK, "sla=1m4s fits=true worst_fits=false"},
		{"SLA missed", []string{"--sla", "1m"}, exitDoesNotHold, "sla=1m0s fits=false worst_fits=false"},
		{"servers and jitter in the worst case", []string{"--servers", "3", "--tls-jitter", "0s"}, exitOK, "worst_cycle=8s worst_wave_window=16s worst_total=2m8s"},
		{"restart and pause", []string{"--pods", "10", "--max-unavailable", "5", "--restart-time", "3s", "--pause", "1s"}, exitOK, "total=24s"},
		{"no pods", []string{"--pods", "0"}, exitUsage, ""},
		{"no max-unavailable", []string{"--max-unavailable", "0"}, exitUsage, ""},
		{"bad duration", []string{"--reconnect-wait", "soon"}, exitUsage, ""},
		{"stray argument", []string{"24"}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"budget"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, tt.code, out, errOut)
			}
			if tt.line != "" && !hasLine(out, tt.line) {
				t.Errorf("output lacks %q:\n%s", tt.line, out)
			}
			if code != exitOK && errOut == "" {
				t.Error("a failure printed nothing on stderr")
			}
		})
	}
}

func TestBudgetCommandJSON(t *testing.T) {
	code, out, _ := runCLI(t, "budget", "--json", "--sla", "1m")
	if code != exitDoesNotHold {
		t.Fatalf("exit %d, want 1", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if got["cycle_ms"] != 4000.0 || got["wave_window_ms"] != 8000.0 || got["waves"] != 8.0 || got["fits"] != false {
		t.Errorf("JSON %v", got)
	}
}
