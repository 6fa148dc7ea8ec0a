package rotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// Host e2e tests run real nats-server and examples/worker processes. They
// are slow and run without -race in CI:
//
//	NATSCERT_E2E=1 go test -count=1 -run E2E ./rotation/...
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("NATSCERT_E2E") != "1" {
		t.Skip("host e2e test: set NATSCERT_E2E=1 to run it (builds nats-server, runs real processes)")
	}
}

var (
	binOnce sync.Once
	bins    struct{ natsServer, worker, natscert string }
	binErr  error
)

// binaries builds nats-server (scripts/build-nats-server.sh), the example
// worker and natscert, once per test binary.
func binaries(t *testing.T) (natsServer, worker, natscert string) {
	t.Helper()
	binOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			binErr = err
			return
		}
		out, err := exec.Command(filepath.Join(root, "scripts", "build-nats-server.sh")).Output()
		if err != nil {
			binErr = fmt.Errorf("build nats-server: %w", err)
			return
		}
		bins.natsServer = strings.TrimSpace(string(out))
		cache, err := os.UserCacheDir()
		if err != nil {
			binErr = err
			return
		}
		dir := filepath.Join(cache, "natscert", "e2e")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			binErr = err
			return
		}
		bins.worker, bins.natscert = filepath.Join(dir, "worker"), filepath.Join(dir, "natscert")
		for pkg, out := range map[string]string{"./examples/worker": bins.worker, "./cmd/natscert": bins.natscert} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %w: %s", pkg, err, b)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return bins.natsServer, bins.worker, bins.natscert
}

// hostFixture is a 3-node cluster of nats-server processes with mTLS and
// file-based configuration, and example workers under a supervisor that
// restarts them when they exit (as systemd's Restart=always does).
type hostFixture struct {
	t        *testing.T
	dir      string
	old, new *pki.CA
	serverCA *pki.CA
	servers  []*hostProc
	workers  map[string]*workerProc
	worker   string
	// ownRoots gives each worker its own roots file (NATS_TLS_CA), as a
	// server CA rotation needs.
	ownRoots bool
}

type hostProc struct {
	name                       string
	port, httpPort, routePort  int
	conf, pidFile, caFile, log string
	cmd                        *exec.Cmd
}

func freeHostPorts(t *testing.T, n int) []int {
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

var hostConf = template.Must(template.New("conf").Parse(`server_name: {{.S.Name}}
listen: "127.0.0.1:{{.S.Port}}"
http: "127.0.0.1:{{.S.HTTPPort}}"
pid_file: "{{.S.PidFile}}"
tls {
  cert_file: "{{.Dir}}/{{.S.Name}}.pem"
  key_file: "{{.Dir}}/{{.S.Name}}-key.pem"
  ca_file: "{{.S.CAFile}}"
  verify: true
  timeout: 2
  include "{{.S.Name}}-pinned.conf"
}
accounts {
  SYS { users: [ { user: sys, password: sys-e2e } ] }
  APP { users: [ { user: app, password: app-unused } ] }
}
system_account: SYS
no_auth_user: app
cluster {
  name: e2e
  listen: "127.0.0.1:{{.S.RoutePort}}"
  routes: [{{range $i, $r := .Routes}}{{if $i}}, {{end}}"nats-route://127.0.0.1:{{$r}}"{{end}}]
}
`))

func newHostFixture(t *testing.T) *hostFixture {
	t.Helper()
	natsServer, worker, _ := binaries(t)
	dir := t.TempDir()
	f := &hostFixture{t: t, dir: dir, workers: map[string]*workerProc{}, worker: worker}
	var err error
	f.old, err = pki.NewCA("e2e old clients CA")
	must(t, err)
	f.new, err = pki.NewCA("e2e new clients CA")
	must(t, err)
	f.serverCA, err = pki.NewCA("e2e server CA")
	must(t, err)
	must(t, f.old.WriteFiles(f.path("old-ca.pem"), f.path("old-ca-key.pem")))
	must(t, f.new.WriteFiles(f.path("new-ca.pem"), f.path("new-ca-key.pem")))
	must(t, pki.WriteFileAtomic(f.path("server-ca.pem"), f.serverCA.CertPEM, 0o644))
	ports := freeHostPorts(t, 9)
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("n%d", i+1)
		s := &hostProc{name: name, port: ports[3*i], httpPort: ports[3*i+1], routePort: ports[3*i+2],
			conf: f.path(name + ".conf"), pidFile: f.path(name + ".pid"), caFile: f.path(name + "-client-ca.pem"), log: f.path(name + ".log")}
		leaf, err := f.serverCA.Issue("e2e "+name, pki.RoleServer, pki.WithDNSNames("localhost"), pki.WithIPs(net.IPv4(127, 0, 0, 1)))
		must(t, err)
		must(t, leaf.WriteFiles(f.path(name+".pem"), f.path(name+"-key.pem")))
		must(t, pki.WriteFileAtomic(s.caFile, f.old.CertPEM, 0o644))
		must(t, pki.WriteFileAtomic(f.path(name+"-pinned.conf"), nil, 0o644))
		f.servers = append(f.servers, s)
	}
	for _, s := range f.servers {
		var routes []int
		for _, o := range f.servers {
			if o != s {
				routes = append(routes, o.routePort)
			}
		}
		var b bytes.Buffer
		must(t, hostConf.Execute(&b, map[string]any{"S": map[string]any{
			"Name": s.name, "Port": s.port, "HTTPPort": s.httpPort, "RoutePort": s.routePort, "PidFile": s.pidFile, "CAFile": s.caFile,
		}, "Dir": dir, "Routes": routes}))
		must(t, os.WriteFile(s.conf, b.Bytes(), 0o644))
		logf, err := os.Create(s.log)
		must(t, err)
		s.cmd = exec.Command(natsServer, "-c", s.conf)
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		must(t, s.cmd.Start())
		logf.Close()
		t.Cleanup(func() {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = s.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-done
			}
		})
	}
	// Ready: every monitor answers and every server has its two routes.
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range f.servers {
		for {
			var rz struct {
				NumRoutes int `json:"num_routes"`
			}
			err := getJSON(fmt.Sprintf("http://127.0.0.1:%d/routez", s.httpPort), &rz)
			if err == nil && rz.NumRoutes >= 2 {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(s.log)
				t.Fatalf("%s not ready: %v routes=%d\n%s", s.name, err, rz.NumRoutes, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return f
}

func getJSON(url string, v any) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func (f *hostFixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f *hostFixture) urls() string {
	var us []string
	for _, s := range f.servers {
		us = append(us, fmt.Sprintf("tls://127.0.0.1:%d", s.port))
	}
	return strings.Join(us, ",")
}

// workerProc is one examples/worker process under a supervisor.
type workerProc struct {
	id                string
	certFile, keyFile string
	rootsFile         string
	pidFile, log      string
	env               []string

	mu     sync.Mutex
	starts int
	stop   chan struct{}
	done   chan struct{}
}

// addWorker issues the worker's old leaf and starts it under supervision.
func (f *hostFixture) addWorker(id string, env ...string) *workerProc {
	t := f.t
	leaf, err := f.old.Issue("worker "+id, pki.RoleClient)
	must(t, err)
	w := &workerProc{id: id, certFile: f.path(id + ".pem"), keyFile: f.path(id + "-key.pem"),
		pidFile: f.path(id + ".pid"), log: f.path(id + ".log"), stop: make(chan struct{}), done: make(chan struct{})}
	must(t, leaf.WriteFiles(w.certFile, w.keyFile))
	w.env = append(os.Environ(),
		"NATS_URL="+f.urls(), "NATS_TLS_CA="+f.path("server-ca.pem"),
		"NATS_TLS_CERT="+w.certFile, "NATS_TLS_KEY="+w.keyFile,
		"WORKER_PUBLISH_INTERVAL=250ms", "WORKER_PREFIX=e2e", "NATSCERT_SPREAD=200ms")
	if f.ownRoots {
		w.rootsFile = f.path(id + "-roots.pem")
		must(t, pki.WriteFileAtomic(w.rootsFile, f.serverCA.CertPEM, 0o644))
		w.env = append(w.env, "NATS_TLS_CA="+w.rootsFile) // the last value wins
	}
	w.env = append(w.env, env...)
	f.workers[id] = w
	go w.supervise(f.worker)
	t.Cleanup(w.close)
	return w
}

func (w *workerProc) supervise(bin string) {
	defer close(w.done)
	for {
		logf, err := os.OpenFile(w.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return
		}
		cmd := exec.Command(bin)
		cmd.Env = w.env
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return
		}
		_ = pki.WriteFileAtomic(w.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		w.mu.Lock()
		w.starts++
		w.mu.Unlock()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-w.stop:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			logf.Close()
			return
		case <-exited:
			logf.Close()
		}
		select {
		case <-w.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *workerProc) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *workerProc) startCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts
}

// writePlan writes a plan over the fixture: two workloads of three
// workers each, waves of two.
func (f *hostFixture) writePlan(named, unnamed []string, mode Mode) string {
	return f.writePlanModes(named, mode, unnamed, mode)
}

// writePlanModes is writePlan with a mode for each workload.
func (f *hostFixture) writePlanModes(named []string, namedMode Mode, unnamed []string, unnamedMode Mode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: e2e\nstate_dir: %s\non_gate_failure: stop\n", f.path("state"))
	b.WriteString("servers:\n")
	for _, s := range f.servers {
		fmt.Fprintf(&b, `  - name: %s
    client_url: tls://127.0.0.1:%d
    monitor_url: http://127.0.0.1:%d
    system: {user: sys, password: sys-e2e}
    reload: {method: signal, pid_file: %s}
    ca_file: %s
    cert_file: %s
    key_file: %s
    pinned_certs_file: %s
`, s.name, s.port, s.httpPort, s.pidFile, s.caFile, f.path(s.name+".pem"), f.path(s.name+"-key.pem"), f.path(s.name+"-pinned.conf"))
	}
	fmt.Fprintf(&b, `material:
  server_ca: %s
  old_client_ca: %s
  old_client_ca_key: %s
  new_client_ca: %s
  new_client_ca_key: %s
budget: {reconnect_wait: 2s, handshake_timeout: 2s, restart_time: 1s}
timeouts: {reload: 30s, converge: 60s, return: 30s}
workloads:
`, f.path("server-ca.pem"), f.path("old-ca.pem"), f.path("old-ca-key.pem"), f.path("new-ca.pem"), f.path("new-ca-key.pem"))
	for _, wl := range []struct {
		name  string
		ids   []string
		match MatchBy
		mode  Mode
	}{{"named", named, MatchName, namedMode}, {"static", unnamed, MatchFingerprint, unnamedMode}} {
		restart := ""
		if wl.mode == ModeRestart {
			restart = fmt.Sprintf("    restart: {run: 'kill -TERM \"$(cat %s/{{.Member}}.pid)\" && sleep 1'}\n", f.dir)
		}
		fmt.Fprintf(&b, `  - name: %s
    mode: %s
%s    waves: {size: 2}
    gates:
      timeout: 60s
      settle: 1s
      log: {file: "%s/{{.Member}}.log"}
    members:
`, wl.name, wl.mode, restart, f.dir)
		for _, id := range wl.ids {
			w := f.workers[id]
			roots := ""
			if w.rootsFile != "" {
				roots = ", roots_file: " + w.rootsFile
			}
			fmt.Fprintf(&b, "      - {name: %s, match: %s, cert_file: %s, key_file: %s%s}\n", id, wl.match, w.certFile, w.keyFile, roots)
		}
	}
	path := f.path("plan.yaml")
	must(f.t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// waitPresent waits until every worker's old leaf is seen by the servers.
func (f *hostFixture) waitPresent(n int) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := 0
		for _, s := range f.servers {
			var cz struct {
				Conns []struct {
					Certs []struct {
						Cert string `json:"cert_sha256"`
					} `json:"tls_peer_certs"`
				} `json:"connections"`
			}
			if getJSON(fmt.Sprintf("http://127.0.0.1:%d/connz?auth=true", s.httpPort), &cz) == nil {
				for _, c := range cz.Conns {
					if len(c.Certs) > 0 {
						seen++
					}
				}
			}
		}
		if seen >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("only %d of %d workers connected", seen, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *hostFixture) dumpLogs() {
	for id, w := range f.workers {
		b, _ := os.ReadFile(w.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		f.t.Logf("worker %s (starts %d):\n  %s", id, w.startCount(), strings.Join(lines, "\n  "))
	}
}

func checkProof(t *testing.T, res *Result) {
	t.Helper()
	if len(res.Proof) != 3 {
		t.Fatalf("proof on %d servers, want 3", len(res.Proof))
	}
	for _, p := range res.Proof {
		if !p.OK || !p.OldRefused || p.New.Outcome != Accepted || p.OldRemaining != 0 {
			t.Errorf("proof %s: old %s (%s), new %s, old remaining %d", p.Server, p.Old.Outcome, p.Old.Detail, p.New.Outcome, p.OldRemaining)
		}
	}
}

// Client CA rotation in reload mode: six bus workers (reconnect strategy),
// one workload named, one matched by fingerprint; no worker restarts.
func TestE2EReloadMode(t *testing.T) {
	requireE2E(t)
	f := newHostFixture(t)
	named := []string{"api-1", "api-2", "api-3"}
	unnamed := []string{"fp-1", "fp-2", "fp-3"}
	for _, id := range named {
		f.addWorker(id, "NATS_CLIENT_NAME="+id, "NATSCERT_STRATEGY=reconnect")
	}
	for _, id := range unnamed {
		f.addWorker(id, "NATSCERT_STRATEGY=reconnect") // the bus names it after the host: shared, so matched by fingerprint
	}
	f.waitPresent(6)
	p, err := LoadPlan(f.writePlan(named, unnamed, ModeReload))
	must(t, err)
	r, err := New(p, WithPollInterval(200*time.Millisecond))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	if err != nil {
		f.dumpLogs()
		for _, ph := range res.Phases {
			t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
		}
		t.Fatalf("Run: %v", err)
	}
	checkProof(t, res)
	for id, w := range f.workers {
		if n := w.startCount(); n != 1 {
			t.Errorf("worker %s started %d times, want 1 (no restart in reload mode)", id, n)
		}
	}
}

// Client CA rotation in restart mode through the CLI, with the runner
// SIGKILLed mid-wave (a restart left in doubt) and resumed: it finishes
// with the proof and never restarts a finished member again.
func TestE2ERestartModeKilledAndResumed(t *testing.T) {
	requireE2E(t)
	_, _, natscert := binaries(t)
	f := newHostFixture(t)
	named := []string{"api-1", "api-2", "api-3"}
	unnamed := []string{"st-1", "st-2", "st-3"}
	for _, id := range named {
		f.addWorker(id, "NATS_CLIENT_NAME="+id, "NATSCERT_STRATEGY=none")
	}
	for _, id := range unnamed {
		f.addWorker(id, "WORKER_STATIC=1") // today's code, no name
	}
	f.waitPresent(6)
	plan := f.writePlan(named, unnamed, ModeRestart)
	journal := filepath.Join(f.path("state"), JournalFile)

	// Run, and SIGKILL the runner once the restart of api-3 (second wave
	// of the first workload) has begun.
	run := exec.Command(natscert, "rotate", "run", "-f", plan, "--json")
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	must(t, run.Start())
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	killed := false
	deadline := time.Now().Add(90 * time.Second)
	for !killed {
		b, _ := os.ReadFile(journal)
		if bytes.Contains(b, []byte(`"step":"restart:api-3","state":"begin"`)) {
			_ = run.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
		select {
		case err := <-exited:
			f.dumpLogs()
			t.Fatalf("runner ended before the kill: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = run.Process.Kill()
			t.Fatalf("restart of api-3 never began:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-exited
	// The killed run left a restart in doubt.
	b, _ := os.ReadFile(journal)
	if bytes.Contains(b, []byte(`"step":"restart:api-3","state":"done"`)) {
		t.Log("the restart finished before the kill landed; resume still must not repeat it")
	}

	// A second run refuses; resume finishes.
	if code := exitCode(exec.Command(natscert, "rotate", "run", "-f", plan).Run()); code != 2 {
		t.Errorf("run over an unfinished journal: exit %d, want 2", code)
	}
	resume := exec.Command(natscert, "rotate", "resume", "-f", plan, "--json", "--out", f.path("report"))
	out.Reset()
	resume.Stdout, resume.Stderr = &out, &out
	if err := resume.Run(); err != nil {
		f.dumpLogs()
		t.Fatalf("resume: %v\n%s", err, out.String())
	}
	var res *Result
	for _, line := range strings.Split(out.String(), "\n") {
		var v struct {
			Kind   string  `json:"kind"`
			Result *Result `json:"result"`
		}
		if json.Unmarshal([]byte(line), &v) == nil && v.Kind == "result" {
			res = v.Result
		}
	}
	if res == nil {
		t.Fatalf("no result in output:\n%s", out.String())
	}
	checkProof(t, res)
	for id, w := range f.workers {
		if n := w.startCount(); n != 2 {
			t.Errorf("worker %s started %d times, want 2 (one restart, never repeated)", id, n)
		}
	}
	if _, err := os.Stat(filepath.Join(f.path("report"), "report.json")); err != nil {
		t.Errorf("report: %v", err)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// A same-CA client leaf rotation revoked by pinned_certs, with the
// servers' own leaves renewed from the same server CA in the same run: no
// worker is disconnected by the server certificate reload, every server
// presents its new leaf, and a forgotten worker outside the plan still
// holding an old leaf is dropped by the revoke reload; the proof passes
// (old probe closed after the handshake, new probe accepted).
func TestE2ESameCALeafPinnedAndServerRenewal(t *testing.T) {
	requireE2E(t)
	f := newHostFixture(t)
	must(t, f.serverCA.WriteFiles(f.path("server-ca.pem"), f.path("server-ca-key.pem")))
	named := []string{"api-1", "api-2", "api-3"}
	unnamed := []string{"fp-1", "fp-2", "fp-3"}
	for _, id := range named {
		f.addWorker(id, "NATS_CLIENT_NAME="+id, "NATSCERT_STRATEGY=reconnect")
	}
	for _, id := range unnamed {
		f.addWorker(id, "NATSCERT_STRATEGY=reconnect")
	}
	forgotten := f.addWorker("forgotten", "WORKER_STATIC=1", "NATS_CLIENT_NAME=forgotten")
	f.waitPresent(7)
	plan := f.writePlan(named, unnamed, ModeReload)
	b, err := os.ReadFile(plan)
	must(t, err)
	b = bytes.Replace(b, []byte("  new_client_ca: "+f.path("new-ca.pem")), []byte("  new_client_ca: "+f.path("old-ca.pem")), 1)
	b = bytes.Replace(b, []byte("  new_client_ca_key: "+f.path("new-ca-key.pem")), []byte("  new_client_ca_key: "+f.path("old-ca-key.pem")+
		"\n  server_certs: {ca_key: "+f.path("server-ca-key.pem")+"}"), 1)
	must(t, os.WriteFile(plan, b, 0o644))
	before := map[string]string{}
	for _, s := range f.servers {
		before[s.name] = fingerprintOf(t, f.path(s.name+".pem"))
	}
	p, err := LoadPlan(plan)
	must(t, err)
	r, err := New(p, WithPollInterval(200*time.Millisecond))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	if err != nil {
		f.dumpLogs()
		for _, ph := range res.Phases {
			t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
		}
		t.Fatalf("Run: %v", err)
	}
	for _, ph := range res.Phases {
		switch ph.Name {
		case PhaseServerCerts:
			if !strings.Contains(ph.Observed, "every member connection kept") {
				t.Errorf("server_certs: %s", ph.Observed)
			}
		case PhaseRevoke:
			if !strings.Contains(ph.Observed, "pinned_certs") || !strings.Contains(ph.Observed, "1 connection(s) on old material dropped by the reload") {
				t.Errorf("revoke: %s", ph.Observed)
			}
		}
	}
	if len(res.Proof) != 3 {
		t.Fatalf("proof on %d servers", len(res.Proof))
	}
	for _, pr := range res.Proof {
		if !pr.OK || !pr.OldRefused || pr.New.Outcome != Accepted ||
			pr.New.ServerCertSHA256 != pr.ServerCertSHA256 || pr.ServerCertSHA256 == before[pr.Server] {
			t.Errorf("proof %s: old %s (%s), new %s, server cert %s want %s", pr.Server, pr.Old.Outcome, pr.Old.Detail,
				pr.New.Outcome, short(pr.New.ServerCertSHA256), short(pr.ServerCertSHA256))
		}
	}
	// The forgotten worker was connected before revoke and is not now.
	oldFP := fingerprintOf(t, forgotten.certFile)
	obs, err := fleet.New(fleet.Monitor(f.monitorURLs()...), fleet.WithSettle(0))
	must(t, err)
	st, err := obs.Poll(ctx)
	must(t, err)
	for _, c := range st.Connections {
		if c.CertSHA256 == oldFP {
			t.Errorf("forgotten worker still connected on its old leaf: %+v", c)
		}
	}
	for _, id := range append(named, unnamed...) {
		if n := f.workers[id].startCount(); n != 1 {
			t.Errorf("worker %s started %d times", id, n)
		}
	}
}

func (f *hostFixture) monitorURLs() []string {
	var us []string
	for _, s := range f.servers {
		us = append(us, fmt.Sprintf("http://127.0.0.1:%d", s.httpPort))
	}
	return us
}

// serverCAPlan turns the fixture's plan into a server CA rotation to a
// new server CA, written beside the old one; it returns the new CA.
func (f *hostFixture) serverCAPlan(plan string, edits ...string) *pki.CA {
	t := f.t
	ca, err := pki.NewCA("e2e server CA 2")
	must(t, err)
	must(t, ca.WriteFiles(f.path("new-server-ca.pem"), f.path("new-server-ca-key.pem")))
	b, err := os.ReadFile(plan)
	must(t, err)
	line := "  server_ca: " + f.path("server-ca.pem") + "\n"
	b = bytes.Replace(b, []byte(line), []byte(line+"  new_server_ca: "+f.path("new-server-ca.pem")+
		"\n  server_certs: {ca_key: "+f.path("new-server-ca-key.pem")+", routes: none}\n"), 1)
	for i := 0; i+1 < len(edits); i += 2 {
		b = bytes.Replace(b, []byte(edits[i]), []byte(edits[i+1]), 1)
	}
	must(t, os.WriteFile(plan, b, 0o644))
	return ca
}

// rootsOf reads a worker's roots file.
func rootsOf(t *testing.T, w *workerProc) []*x509.Certificate {
	t.Helper()
	certs, err := pki.ReadCertificates(w.rootsFile)
	must(t, err)
	return certs
}

func logPhases(t *testing.T, res *Result) {
	for _, ph := range res.Phases {
		t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
	}
}

// A server CA rotation with a client CA rotation, on bus workers (reload
// mode: observed through the roots they log) and start-up-loaded workers
// (restart mode: restarted, observed reconnecting): every worker passes
// both kick rounds, ends with the new server CA only in its roots, and
// the proof passes with every server presenting a leaf of the new CA.
func TestE2EServerCARotation(t *testing.T) {
	requireE2E(t)
	f := newHostFixture(t)
	f.ownRoots = true
	named := []string{"api-1", "api-2", "api-3"}
	unnamed := []string{"st-1", "st-2", "st-3"}
	for _, id := range named {
		f.addWorker(id, "NATS_CLIENT_NAME="+id, "NATSCERT_STRATEGY=reconnect")
	}
	for _, id := range unnamed {
		f.addWorker(id, "WORKER_STATIC=1")
	}
	f.waitPresent(6)
	plan := f.writePlanModes(named, ModeReload, unnamed, ModeRestart)
	newCA := f.serverCAPlan(plan)
	p, err := LoadPlan(plan)
	must(t, err)
	r, err := New(p, WithPollInterval(200*time.Millisecond))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	if err != nil {
		f.dumpLogs()
		logPhases(t, res)
		t.Fatalf("Run: %v", err)
	}
	checkProof(t, res)
	var phases []string
	for _, ph := range res.Phases {
		phases = append(phases, ph.Name)
	}
	want := strings.Join([]string{PhasePreflight, PhaseTrustBoth, PhaseServerRoots, PhaseServerCerts, PhaseServerReconnect,
		PhaseServerRootsNew, PhaseWaves, PhaseConverged, PhaseRevoke, PhaseProof}, " ")
	if got := strings.Join(phases, " "); got != want {
		t.Errorf("phases %s, want %s", got, want)
	}
	rounds := map[string]map[string]bool{}
	for _, k := range res.Kicks {
		if rounds[k.Phase] == nil {
			rounds[k.Phase] = map[string]bool{}
		}
		rounds[k.Phase][k.Member] = true
		if !k.Returned {
			t.Errorf("kick %+v: not returned", k)
		}
	}
	for _, ph := range []string{PhaseServerReconnect, PhaseServerRootsNew} {
		if len(rounds[ph]) != 6 {
			t.Errorf("%s kicked %d member(s), want 6: %v", ph, len(rounds[ph]), rounds[ph])
		}
	}
	for _, pr := range res.Proof {
		if pr.ServerCertSHA256 == "" || pr.New.ServerCertSHA256 != pr.ServerCertSHA256 {
			t.Errorf("proof %s: server presents %s, want %s", pr.Server, short(pr.New.ServerCertSHA256), short(pr.ServerCertSHA256))
		}
	}
	for _, s := range f.servers {
		certs, err := pki.ReadCertificates(f.path(s.name + ".pem"))
		must(t, err)
		if err := certs[0].CheckSignatureFrom(newCA.Cert); err != nil {
			t.Errorf("%s: certificate not issued by the new server CA: %v", s.name, err)
		}
	}
	for id, w := range f.workers {
		if roots := rootsOf(t, w); len(roots) != 1 || !roots[0].Equal(newCA.Cert) {
			t.Errorf("worker %s: roots hold %d certificate(s), want the new server CA only", id, len(roots))
		}
	}
	for _, id := range named {
		if n := f.workers[id].startCount(); n != 1 {
			t.Errorf("worker %s started %d times, want 1 (reload mode)", id, n)
		}
	}
	for _, id := range unnamed {
		// Two roots changes and the new leaf: three restarts.
		if n := f.workers[id].startCount(); n != 4 {
			t.Errorf("worker %s started %d times, want 4", id, n)
		}
	}
}

// A worker whose roots are put back to the old server CA only, after the
// roots phase observed them (a configuration tool overwriting the file),
// does not come back from the first kick round: the rotation stops with
// ErrPhaseFailed before the old server CA leaves anyone's roots. Abort
// then puts the servers back on their old certificates and the members'
// roots back to the old server CA, and the worker reconnects.
func TestE2EServerCAStaleRootsStops(t *testing.T) {
	requireE2E(t)
	f := newHostFixture(t)
	f.ownRoots = true
	named := []string{"api-1", "api-2", "api-3"}
	unnamed := []string{"fp-1", "fp-2", "fp-3"}
	for _, id := range named {
		f.addWorker(id, "NATS_CLIENT_NAME="+id, "NATSCERT_STRATEGY=reconnect")
	}
	for _, id := range unnamed {
		f.addWorker(id, "NATSCERT_STRATEGY=reconnect")
	}
	f.waitPresent(6)
	plan := f.writePlan(named, unnamed, ModeReload)
	f.serverCAPlan(plan, "return: 30s", "return: 15s")
	oldServer := map[string]string{}
	for _, s := range f.servers {
		oldServer[s.name] = fingerprintOf(t, f.path(s.name+".pem"))
	}
	victim := f.workers["api-2"]
	p, err := LoadPlan(plan)
	must(t, err)
	r, err := New(p, WithPollInterval(200*time.Millisecond), WithEvents(func(e Event) {
		if e.Kind == PhaseEnded && e.Phase == PhaseServerRoots && e.OK {
			must(t, pki.WriteFileAtomic(victim.rootsFile, f.serverCA.CertPEM, 0o644))
		}
	}))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	if !errors.Is(err, ErrPhaseFailed) {
		f.dumpLogs()
		logPhases(t, res)
		t.Fatalf("Run: %v, want ErrPhaseFailed", err)
	}
	last := res.Phases[len(res.Phases)-1]
	if last.Name != PhaseServerReconnect || last.OK || !strings.Contains(last.Error, "api-2") {
		logPhases(t, res)
		t.Fatalf("stopped at %s (%s), want %s naming api-2", last.Name, last.Error, PhaseServerReconnect)
	}
	for id, w := range f.workers {
		want := 2
		if w == victim {
			want = 1
		}
		if n := len(rootsOf(t, w)); n != want {
			t.Errorf("worker %s: roots hold %d certificate(s), want %d", id, n, want)
		}
	}

	r, err = New(p, WithPollInterval(200*time.Millisecond))
	must(t, err)
	ares, err := r.Abort(ctx)
	if err != nil {
		f.dumpLogs()
		logPhases(t, ares)
		t.Fatalf("Abort: %v", err)
	}
	for _, s := range f.servers {
		if fp := fingerprintOf(t, f.path(s.name+".pem")); fp != oldServer[s.name] {
			t.Errorf("%s: certificate %s after abort, want the old %s", s.name, short(fp), short(oldServer[s.name]))
		}
	}
	for id, w := range f.workers {
		if roots := rootsOf(t, w); len(roots) != 1 || !roots[0].Equal(f.serverCA.Cert) {
			t.Errorf("worker %s: roots not back to the old server CA", id)
		}
	}
	f.waitPresent(6) // the victim is back too
}
