package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatePlanDryRun(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"rotate", "plan", "-f", "../../docs/plan.example.yaml"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"orders wave 1 (reload): orders-1", "billing wave 1 (restart): billing-a", "budget:", "SLA 30m0s: fits"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRotatePlanInvalidNamesField(t *testing.T) {
	src, err := os.ReadFile("../../docs/plan.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), "    mode: restart ", "    mode: rolling ", 1)
	bad = strings.Replace(bad, "      size: 1                   # members per wave", "      size: one", 1)
	path := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"rotate", "plan", "-f", path}, &out, &errb)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "workloads[0].waves.size") {
		t.Errorf("stderr does not name the field: %s", errb.String())
	}
	if code := run(context.Background(), []string{"rotate", "run"}, &out, &errb); code != exitUsage {
		t.Errorf("run without -f: exit %d", code)
	}
}
