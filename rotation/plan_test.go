package rotation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExamplePlanIsValid(t *testing.T) {
	p, err := LoadPlan("../docs/plan.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Waves) != 3 || s.Waves[2].Workload != "billing" {
		t.Errorf("waves %+v", s.Waves)
	}
	if !s.Budget.Fits || s.Budget.Total <= 0 {
		t.Errorf("budget %+v", s.Budget)
	}
}

// Every broken plan names the field and the problem.
func TestInvalidPlansNameTheField(t *testing.T) {
	const base = `
name: x
servers:
  - {client_url: "tls://a:4222", monitor_url: "http://a:8222", ca_file: ca.pem, system: {user: sys}, reload: {method: none}}
material: {server_ca: s.pem, old_client_ca: o.pem, new_client_ca: n.pem, new_client_ca_key: nk.pem, old_client_ca_key: ok.pem}
workloads:
  - name: w
    mode: reload
    members:
      - {name: m1, cert_file: c.pem, key_file: k.pem}
`
	for _, tc := range []struct{ name, plan, want string }{
		{"unknown field", strings.Replace(base, "name: x", "name: x\nwaves_per_hour: 3", 1), "waves_per_hour"},
		{"unknown nested field", strings.Replace(base, "mode: reload", "mode: reload\n    restart_cmd: x", 1), "restart_cmd"},
		{"bad mode", strings.Replace(base, "mode: reload", "mode: rolling", 1), `workloads[0].mode: "rolling" is not one of restart, reload`},
		{"bad reload", strings.Replace(base, "method: none", "method: hup", 1), `servers[0].reload.method: "hup"`},
		{"no way to kick", strings.Replace(base, " system: {user: sys},", "", 1), "servers[0].system: required"},
		{"remote ca_file without its copy", strings.Replace(base, "reload: {method: none}", "reload: {method: none}, deliver: {run: scp}", 1), "servers[0].current_ca: required with deliver"},
		{"negative pid", strings.Replace(base, "method: none", "method: signal, pid: -1", 1), "servers[0].reload.pid: -1 is not a process id"},
		{"signal without pid", strings.Replace(base, "method: none", "method: signal", 1), "servers[0].reload: method signal needs pid or pid_file"},
		{"missing cert_file", strings.Replace(base, "cert_file: c.pem, ", "", 1), "workloads[0].members[0].cert_file: required"},
		{"bad match", strings.Replace(base, "{name: m1,", "{name: m1, match: cn,", 1), `workloads[0].members[0].match: "cn"`},
		{"bad duration", strings.Replace(base, "name: x", "name: x\nsla: soon", 1), "sla"},
		{"bad gate action", strings.Replace(base, "name: x", "name: x\non_gate_failure: ignore", 1), `on_gate_failure: "ignore"`},
		{"restart in reload mode", strings.Replace(base, "mode: reload", "mode: reload\n    restart: {run: x}", 1), "workloads[0].restart"},
		{"bad regexp", strings.Replace(base, "mode: reload", "mode: reload\n    gates: {log: {file: l, patterns: [{name: a, regexp: \"(\"}]}}", 1), "workloads[0].gates.log.patterns[0].regexp"},
		{"empty", "", "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePlan(strings.NewReader(tc.plan))
			if !errors.Is(err, ErrPlan) {
				t.Fatalf("err = %v, want ErrPlan", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to name %q", err, tc.want)
			}
		})
	}
	if _, err := ParsePlan(strings.NewReader(base)); err != nil {
		t.Fatalf("base plan: %v", err)
	}
	// abort: the older name of stop, still accepted.
	for _, a := range []string{"stop", "abort", "pause"} {
		if _, err := ParsePlan(strings.NewReader(strings.Replace(base, "name: x", "name: x\non_gate_failure: "+a, 1))); err != nil {
			t.Errorf("on_gate_failure %s: %v", a, err)
		}
	}
}

// A server CA rotation names what it needs: server_certs with routes,
// each member's roots_file, and a log for reload-mode members.
func TestServerCAPlan(t *testing.T) {
	const base = `
name: x
servers:
  - {client_url: "tls://a:4222", monitor_url: "http://a:8222", ca_file: ca.pem, cert_file: s.pem, key_file: sk.pem, system: {user: sys}, reload: {method: none}}
material:
  server_ca: s.pem
  new_server_ca: s2.pem
  server_certs: {ca_key: s2k.pem, routes: none}
  old_client_ca: o.pem
  new_client_ca: n.pem
  new_client_ca_key: nk.pem
  old_client_ca_key: ok.pem
workloads:
  - name: w
    mode: reload
    gates: {log: {file: "{{.Member}}.log"}}
    members:
      - {name: m1, cert_file: c.pem, key_file: k.pem, roots_file: r.pem}
`
	for _, tc := range []struct{ name, plan, want string }{
		{"no server_certs", strings.Replace(base, "  server_certs: {ca_key: s2k.pem, routes: none}\n", "", 1), "material.server_certs: required with material.new_server_ca"},
		{"no routes", strings.Replace(base, ", routes: none", "", 1), "material.server_certs.routes: required"},
		{"bad routes", strings.Replace(base, "routes: none", "routes: shared", 1), `material.server_certs.routes: "shared"`},
		{"no roots_file", strings.Replace(base, ", roots_file: r.pem", "", 1), "workloads[0].members[0].roots_file: required"},
		{"no log", strings.Replace(base, `    gates: {log: {file: "{{.Member}}.log"}}`+"\n", "", 1), "workloads[0].members[0].log: required"},
		{"bad roots_loaded", strings.Replace(base, `{file: "{{.Member}}.log"}`, `{file: l, roots_loaded: "("}`, 1), "workloads[0].gates.log.roots_loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePlan(strings.NewReader(tc.plan))
			if !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrPlan naming %q", err, tc.want)
			}
		})
	}
	p, err := ParsePlan(strings.NewReader(base))
	if err != nil {
		t.Fatalf("base plan: %v", err)
	}
	s, err := p.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	want := "preflight trust_both server_roots server_certs server_reconnect server_roots_new waves converged revoke proof report"
	if got := strings.Join(s.Phases, " "); got != want {
		t.Errorf("phases %s, want %s", got, want)
	}
	// Restart-mode members are observed by their reconnect, not a log.
	restart := strings.Replace(base, "mode: reload", "mode: restart\n    restart: {run: x}", 1)
	if _, err := ParsePlan(strings.NewReader(strings.Replace(restart, `    gates: {log: {file: "{{.Member}}.log"}}`+"\n", "", 1))); err != nil {
		t.Errorf("restart mode without a log: %v", err)
	}
}

// A pid file holding 0, 1 or a negative pid is refused before any signal:
// kill(2) would signal a process group, or every process (-1).
func TestReloadPidFileRefusesNonServerPids(t *testing.T) {
	dir := t.TempDir()
	p := &Plan{Name: "x", Dir: dir}
	for _, content := range []string{"-1", "0", "1", "x"} {
		must(t, os.WriteFile(filepath.Join(dir, "pid"), []byte(content+"\n"), 0o644))
		h := HostServer(p, ServerSpec{ClientURL: "tls://127.0.0.1:1", Reload: ReloadSpec{Method: ReloadSignal, PidFile: "pid"}}, nil).(*hostServer)
		if pid, err := h.pid(); err == nil {
			t.Errorf("pid file %q: pid %d accepted", content, pid)
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "pid"), []byte("4242\n"), 0o644))
	h := HostServer(p, ServerSpec{ClientURL: "tls://127.0.0.1:1", Reload: ReloadSpec{Method: ReloadSignal, PidFile: "pid"}}, nil).(*hostServer)
	if pid, err := h.pid(); err != nil || pid != 4242 {
		t.Errorf("pid file 4242: %d, %v", pid, err)
	}
}
