package rotation

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/natscert/natscert/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats.go and net/http keep-alives outlive a test briefly.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
}

func (l *eventLog) count(kind EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// A full rotation: reloading named members and start-up-loaded unnamed
// members matched by fingerprint, through every phase to the proof.
func TestRotateReloadAndRestart(t *testing.T) {
	f := newFixture(t, 3)
	f.addClient("api-1", "api-1", false)
	f.addClient("api-2", "api-2", false)
	f.addClient("s1", "", true)
	f.addClient("s2", "", true)
	oldFP := fingerprintOf(t, f.clients["s1"].certFile)
	// One server also trusts another team's CA: the rotation adds and
	// removes client CAs around it, never drops it.
	third, err := pki.NewCA("monitoring CA")
	must(t, err)
	thirdCAFile := f.cluster.Servers[1].CAFile
	must(t, os.WriteFile(thirdCAFile, append(append([]byte(nil), third.CertPEM...), f.old.CertPEM...), 0o644))
	var trustBoth []byte

	var events eventLog
	r, err := New(f.plan([]string{"api-1", "api-2"}, []string{"s1", "s2"}),
		WithServers(f.servers()...), WithTarget("static", &target{f: f}),
		WithEvents(func(e Event) {
			if e.Kind == PhaseEnded && e.Phase == PhaseTrustBoth {
				trustBoth, _ = os.ReadFile(thirdCAFile)
			}
			events.add(e)
		}), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if err != nil {
		for _, p := range res.Phases {
			t.Logf("%s ok=%v %s %s", p.Name, p.OK, p.Observed, p.Error)
		}
		t.Fatalf("Run: %v", err)
	}
	if !res.OK || res.Outcome != "completed" {
		t.Fatalf("result %+v", res)
	}
	// The servers came by WithServers, not the plan: the budget counts them.
	want, _ := r.plan.estimate(len(f.cluster.Servers))
	if none, _ := r.plan.Estimate(); res.Budget != want || want == none {
		t.Errorf("budget %+v, want %+v (plan without servers: %+v)", res.Budget, want, none)
	}
	var names []string
	for _, p := range res.Phases {
		names = append(names, p.Name)
		if !p.OK || p.Observed == "" || p.End.Before(p.Start) {
			t.Errorf("phase %s: %+v", p.Name, p)
		}
	}
	if got := strings.Join(names, ","); got != "preflight,trust_both,waves,converged,revoke,proof" {
		t.Errorf("phases %s", got)
	}
	if len(res.Waves) != 4 {
		t.Errorf("waves: %d, want 4", len(res.Waves))
	}
	if len(res.Proof) != 3 {
		t.Fatalf("proof on %d servers", len(res.Proof))
	}
	for _, p := range res.Proof {
		if !p.OK || !p.OldRefused || p.New.Outcome != Accepted {
			t.Errorf("proof %s: old %s (%s) new %s (%s)", p.Server, p.Old.Outcome, p.Old.Detail, p.New.Outcome, p.New.Detail)
		}
	}
	for _, m := range res.Members {
		if !m.OnNew || !m.Delivered {
			t.Errorf("member %+v", m)
		}
		wantRestarts := 0
		if m.Mode == ModeRestart {
			wantRestarts = 1
		}
		if m.Restarts != wantRestarts {
			t.Errorf("member %s restarts %d, want %d", m.Name, m.Restarts, wantRestarts)
		}
	}
	if n := f.clients["api-1"].restartCount(); n != 0 {
		t.Errorf("reload member restarted %d times", n)
	}
	for _, c := range f.presented(t) {
		if c.CertSHA256 == oldFP {
			t.Errorf("old fingerprint still presented: %+v", c)
		}
	}
	ca, _ := os.ReadFile(f.cluster.Servers[0].CAFile)
	if !bytes.Equal(ca, f.new.CertPEM) {
		t.Errorf("ca_file after revoke is not the new CA only")
	}
	if want := pki.EncodeCertificates(third.Cert, f.old.Cert, f.new.Cert); !bytes.Equal(trustBoth, want) {
		t.Errorf("ca_file after trust_both is not monitoring+old+new:\n%s", trustBoth)
	}
	if ca, _ := os.ReadFile(thirdCAFile); !bytes.Equal(ca, pki.EncodeCertificates(third.Cert, f.new.Cert)) {
		t.Errorf("ca_file after revoke is not monitoring+new:\n%s", ca)
	}
	thirdLeaf, err := third.Issue("monitoring", pki.RoleClient)
	must(t, err)
	s1 := f.cluster.Servers[1]
	if pr := (&Probe{Cert: thirdLeaf.TLSCertificate(), Roots: f.roots}).Run(testContext(t), s1.Name, s1.ClientURL); pr.Outcome != Accepted {
		t.Errorf("a client of the other CA after revoke: %s (%s)", pr.Outcome, pr.Detail)
	}
	if events.count(WaveGated) != 4 || events.count(PhaseObserved) != 6 {
		t.Errorf("events: %d wave_gated, %d phase_observed", events.count(WaveGated), events.count(PhaseObserved))
	}
	// A second run on the same state refuses: the journal has it.
	r2, err := New(f.plan([]string{"api-1", "api-2"}, []string{"s1", "s2"}), WithServers(f.servers()...), WithTarget("static", &target{f: f}))
	must(t, err)
	if _, err := r2.Run(testContext(t)); !errors.Is(err, ErrInProgress) {
		t.Errorf("second run: %v, want ErrInProgress", err)
	}
}

// A gate that does not hold stops the rotation before revoke; abort then
// restores the old trust and material, and every member, kicked,
// reconnects with its old material.
func TestGateFailureThenAbort(t *testing.T) {
	f := newFixture(t, 3)
	f.addClient("api-1", "api-1", false)
	f.addClient("s1", "", true)
	f.addClient("s2", "", true)
	old := map[string]string{}
	for id, c := range f.clients {
		old[id] = fingerprintOf(t, c.certFile)
	}
	tg := &target{f: f, skip: map[string]bool{"s2": true}}
	p := f.plan([]string{"api-1"}, []string{"s1", "s2"})
	p.Workloads[1].Gates.Timeout = 3 * time.Second
	// Abort restores the bytes a server had, not a bundle rebuilt.
	third, err := pki.NewCA("leaf nodes CA")
	must(t, err)
	orig := []byte("\n" + string(third.CertPEM) + "\n" + string(f.old.CertPEM))
	must(t, os.WriteFile(f.cluster.Servers[2].CAFile, orig, 0o644))
	r, err := New(p, WithServers(f.servers()...), WithTarget("static", tg), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if !errors.Is(err, ErrGateFailed) {
		t.Fatalf("Run: %v, want ErrGateFailed", err)
	}
	if last := res.Waves[len(res.Waves)-1]; last.OK || !strings.Contains(last.Gate, "s2") {
		t.Errorf("last wave %+v", last)
	}
	for _, p := range res.Phases {
		if p.Name == PhaseRevoke {
			t.Fatalf("revoke ran after a failed gate")
		}
	}
	ca, _ := os.ReadFile(f.cluster.Servers[0].CAFile)
	if !bytes.Contains(ca, f.new.CertPEM) || !bytes.Contains(ca, f.old.CertPEM) {
		t.Fatalf("servers should still trust both after a failed gate")
	}

	// Abort.
	tg.mu.Lock()
	tg.skip = nil
	tg.mu.Unlock()
	var ended []Event
	r, err = New(p, WithServers(f.servers()...), WithTarget("static", tg), WithPollInterval(100*time.Millisecond),
		WithEvents(func(e Event) {
			if e.Kind == RotationEnded {
				ended = append(ended, e)
			}
		}))
	must(t, err)
	res, err = r.Abort(testContext(t))
	if err != nil {
		t.Fatalf("Abort: %v (%+v)", err, res)
	}
	if res.OK || res.Outcome != "aborted" || len(ended) != 1 || ended[0].Detail != "aborted" {
		t.Errorf("abort: ok %v outcome %s, rotation_ended %+v", res.OK, res.Outcome, ended)
	}
	for i, s := range f.cluster.Servers {
		want := f.old.CertPEM
		if i == 2 {
			want = orig
		}
		if ca, _ := os.ReadFile(s.CAFile); !bytes.Equal(ca, want) {
			t.Fatalf("%s: ca_file not restored:\n%s", s.Name, ca)
		}
	}
	for id, c := range f.clients {
		if got := fingerprintOf(t, c.certFile); got != old[id] {
			t.Errorf("%s: files not restored", id)
		}
	}
	// Kick every member: each must come back with its old material.
	ctx := testContext(t)
	for _, c := range f.presented(t) {
		for _, s := range f.cluster.Servers {
			if s.Name == c.Server {
				_ = s.NATS.DisconnectClientByID(c.CID)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := map[string]bool{}
		for _, c := range f.presented(t) {
			for id, fp := range old {
				if c.CertSHA256 == fp {
					seen[id] = true
				}
			}
		}
		if len(seen) == len(old) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after abort and kick, on old material: %v of %d", seen, len(old))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Neither resume nor abort is possible now.
	if _, err := r.Resume(ctx); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resume after abort: %v", err)
	}
}

// A server whose reload fails stops the rotation in trust_both, before any
// member is touched.
func TestReloadFailureStopsBeforeClients(t *testing.T) {
	f := newFixture(t, 3)
	f.addClient("api-1", "api-1", false)
	before := fingerprintOf(t, f.clients["api-1"].certFile)
	must(t, os.WriteFile(f.cluster.Servers[1].ConfigFile, []byte("tls { this is not a config"), 0o644))
	r, err := New(f.plan([]string{"api-1"}, nil), WithServers(f.servers()...), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if !errors.Is(err, ErrPhaseFailed) {
		t.Fatalf("Run: %v, want ErrPhaseFailed", err)
	}
	last := res.Phases[len(res.Phases)-1]
	if last.Name != PhaseTrustBoth || last.OK || !strings.Contains(last.Error, "n2") {
		t.Errorf("last phase %+v", last)
	}
	if len(res.Waves) != 0 {
		t.Errorf("waves ran: %+v", res.Waves)
	}
	if got := fingerprintOf(t, f.clients["api-1"].certFile); got != before {
		t.Errorf("member files touched")
	}
}

// A member that cannot come back on new material after the revoke kick
// fails the revoke phase.
func TestRevokeKickedMemberNeverReturns(t *testing.T) {
	f := newFixture(t, 1)
	f.addClient("api-1", "api-1", false)
	f.addClient("s1", "", true)
	s1 := f.clients["s1"]
	oldCert, _ := os.ReadFile(s1.certFile)
	oldKey, _ := os.ReadFile(s1.keyFile)
	var once sync.Once
	hook := func(e Event) {
		if e.Kind == PhaseStarted && e.Phase == PhaseRevoke {
			once.Do(func() {
				// Configuration management puts the old leaf back and
				// the member restarts on it: a straggler.
				must(t, os.WriteFile(s1.keyFile, oldKey, 0o600))
				must(t, os.WriteFile(s1.certFile, oldCert, 0o644))
				must(t, s1.restart())
			})
		}
	}
	p := f.plan([]string{"api-1"}, []string{"s1"})
	p.Timeouts.Return = 3 * time.Second
	r, err := New(p, WithServers(f.servers()...), WithTarget("static", &target{f: f}), WithEvents(hook), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if !errors.Is(err, ErrPhaseFailed) {
		t.Fatalf("Run: %v, want ErrPhaseFailed", err)
	}
	last := res.Phases[len(res.Phases)-1]
	if last.Name != PhaseRevoke || !strings.Contains(last.Error, "s1") {
		t.Errorf("last phase %+v", last)
	}
	if len(res.Kicks) == 0 || res.Kicks[0].Returned {
		t.Errorf("kicks %+v", res.Kicks)
	}
}

func TestProbeOutcomes(t *testing.T) {
	f := newFixture(t, 1)
	s := f.cluster.Servers[0]
	oldLeaf, err := f.old.Issue("p-old", "client")
	must(t, err)
	newLeaf, err := f.new.Issue("p-new", "client")
	must(t, err)
	ctx := testContext(t)
	po := &Probe{Cert: oldLeaf.TLSCertificate(), Roots: f.roots}
	pn := &Probe{Cert: newLeaf.TLSCertificate(), Roots: f.roots}
	if r := po.Run(ctx, s.Name, s.ClientURL); r.Outcome != Accepted || r.ServerCertSHA256 == "" {
		t.Errorf("old probe on old trust: %+v", r)
	}
	if r := pn.Run(ctx, s.Name, s.ClientURL); r.Outcome != RejectedHandshake {
		t.Errorf("new probe on old trust: %+v", r)
	}
	if r := pn.Run(ctx, s.Name, "tls://127.0.0.1:1"); r.Outcome != Unreachable {
		t.Errorf("closed port: %+v", r)
	}
	// A server that hangs after INFO refuses nothing: it times out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	hung := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(hung)
			return
		}
		_, _ = c.Write([]byte("INFO {\"tls_required\":true}\r\n"))
		hung <- c
	}()
	ph := &Probe{Cert: oldLeaf.TLSCertificate(), Roots: f.roots, Timeout: 300 * time.Millisecond}
	r := ph.Run(ctx, "hung", "tls://"+ln.Addr().String())
	if c, ok := <-hung; ok {
		c.Close()
	}
	if r.Outcome != TimedOut {
		t.Errorf("hung server: %+v", r)
	}
	// What counts as refused, by mode.
	ca, pinned := &Runner{mat: &loaded{}}, &Runner{mat: &loaded{pinned: true}}
	for _, tc := range []struct {
		pr         ProbeResult
		ca, pinned bool
	}{
		{ProbeResult{Outcome: RejectedHandshake}, true, true},
		{ProbeResult{Outcome: ClosedAfterHandshake, TLSVersion: "TLS 1.3"}, true, true},
		{ProbeResult{Outcome: ClosedAfterHandshake, TLSVersion: "TLS 1.2"}, false, true},
		{ProbeResult{Outcome: TimedOut, TLSVersion: "TLS 1.3"}, false, false},
		{ProbeResult{Outcome: Accepted, TLSVersion: "TLS 1.3"}, false, false},
	} {
		if got := ca.refused(tc.pr); got != tc.ca {
			t.Errorf("CA mode, %s %s: refused %v", tc.pr.Outcome, tc.pr.TLSVersion, got)
		}
		if got := pinned.refused(tc.pr); got != tc.pinned {
			t.Errorf("pinned mode, %s %s: refused %v", tc.pr.Outcome, tc.pr.TLSVersion, got)
		}
	}
}

// The servers' own certificates renewed from the same server CA, in the
// same run as a client CA rotation (as the drill runs it): every server
// presents its new leaf, no member is disconnected by that reload, and
// the proof checks the renewed leaf.
func TestServerCertsRenewed(t *testing.T) {
	f := newFixture(t, 3)
	f.addClient("api-1", "api-1", false)
	must(t, f.cluster.ServerCA.WriteFiles(f.path("server-ca.pem"), f.path("server-ca-key.pem")))
	p := f.plan([]string{"api-1"}, nil)
	p.Material.ServerCerts = &ServerCerts{CAKey: f.path("server-ca-key.pem")}
	before := map[string]string{}
	for _, s := range f.cluster.Servers {
		before[s.Name] = fingerprintOf(t, s.CertFile)
	}
	r, err := New(p, WithServers(f.servers()...), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if err != nil {
		for _, ph := range res.Phases {
			t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
		}
		t.Fatalf("Run: %v", err)
	}
	if res.Phases[2].Name != PhaseServerCerts || !strings.Contains(res.Phases[2].Observed, "every member connection kept") {
		t.Errorf("phase %+v", res.Phases[2])
	}
	for _, pr := range res.Proof {
		if !pr.OK || pr.ServerCertSHA256 == "" || pr.New.ServerCertSHA256 != pr.ServerCertSHA256 || pr.ServerCertSHA256 == before[pr.Server] {
			t.Errorf("proof %s: %+v", pr.Server, pr)
		}
	}
	for _, s := range f.cluster.Servers {
		if fingerprintOf(t, s.CertFile) == before[s.Name] {
			t.Errorf("%s: cert_file not renewed", s.Name)
		}
	}
}

// A same-CA leaf rotation: old and new leaves from one CA, revoked by
// pinned_certs. A straggler outside the plan still holding a member's old
// leaf is dropped by the reload; the old probe completes the handshake and
// is closed before CONNECT; the new probe is accepted.
func TestSameCALeafRotationPinned(t *testing.T) {
	f := newFixture(t, 3)
	f.addClient("api-1", "api-1", false)
	f.addClient("s1", "", true)
	// A forgotten process nobody listed, on an old leaf of the same CA.
	leaf, err := f.old.Issue("forgotten", "client")
	must(t, err)
	stale := &client{id: "stale", name: "forgotten", static: true, urls: f.cluster.ClientURLs(), roots: f.roots,
		certFile: f.path("stale.pem"), keyFile: f.path("stale-key.pem")}
	must(t, leaf.WriteFiles(stale.certFile, stale.keyFile))
	must(t, stale.start())
	t.Cleanup(stale.close)
	p := f.plan([]string{"api-1"}, []string{"s1"})
	p.Material.NewClientCA, p.Material.NewClientCAKey = p.Material.OldClientCA, p.Material.OldClientCAKey
	r, err := New(p, WithServers(f.servers()...), WithTarget("static", &target{f: f}), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if err != nil {
		for _, ph := range res.Phases {
			t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
		}
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(res.Phases[0].Observed, "forgotten") {
		t.Errorf("preflight does not name the connection revoke will drop: %s", res.Phases[0].Observed)
	}
	var revoke PhaseRecord
	for _, ph := range res.Phases {
		if ph.Name == PhaseRevoke {
			revoke = ph
		}
	}
	if !strings.Contains(revoke.Observed, "pinned_certs") || !strings.Contains(revoke.Observed, "1 connection(s) on old material dropped by the reload") {
		t.Errorf("revoke: %s", revoke.Observed)
	}
	for _, pr := range res.Proof {
		if !pr.OK || !pr.OldRefused || pr.New.Outcome != Accepted {
			t.Errorf("proof %s: old %s (%s), new %s", pr.Server, pr.Old.Outcome, pr.Old.Detail, pr.New.Outcome)
		}
	}
	extra, _ := os.ReadFile(f.cluster.Servers[0].TLSExtraFile)
	if !bytes.Contains(extra, []byte("pinned_certs")) {
		t.Errorf("tls include: %s", extra)
	}
	oldFP := fingerprintOf(t, stale.certFile)
	for _, c := range f.presented(t) {
		if c.CertSHA256 == oldFP {
			t.Errorf("the straggler's old leaf is still connected: %+v", c)
		}
	}
}

// A server CA rotation in process, restart mode: one member's roots
// delivery is lost, so its restart brings it back on the old roots alone;
// the first kick round after the servers moved to the new CA leaves it
// out, and the rotation stops with ErrPhaseFailed while every other
// member's roots hold old+new. Abort puts the servers' old certificates
// back and the member returns; every roots file is back to the old CA.
func TestServerCARotationLostRootsStopsThenAbort(t *testing.T) {
	f := newFixture(t, 3)
	newCA, err := pki.NewCA("new server CA")
	must(t, err)
	must(t, newCA.WriteFiles(f.path("new-server-ca.pem"), f.path("new-server-ca-key.pem")))
	for _, id := range []string{"s1", "s2"} {
		roots := f.path(id + "-roots.pem")
		must(t, pki.WriteFileAtomic(roots, f.cluster.ServerCA.CertPEM, 0o644))
		f.addClientWith(id, "", true, func(c *client) { c.rootsFile = roots })
	}
	p := f.plan(nil, []string{"s1", "s2"})
	p.Material.NewServerCA = f.path("new-server-ca.pem")
	p.Material.ServerCerts = &ServerCerts{CAKey: f.path("new-server-ca-key.pem"), Routes: RoutesNone}
	p.Timeouts.Return = 3 * time.Second
	for i := range p.Workloads[0].Members {
		p.Workloads[0].Members[i].RootsFile = f.clients[p.Workloads[0].Members[i].Name].rootsFile
	}
	tg := &target{f: f, skipRoots: map[string]bool{"s2": true}}
	oldCerts := map[string]string{}
	for _, s := range f.cluster.Servers {
		oldCerts[s.Name] = fingerprintOf(t, s.CertFile)
	}
	r, err := New(p, WithServers(f.servers()...), WithTarget("static", tg), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if !errors.Is(err, ErrPhaseFailed) {
		t.Fatalf("Run: %v, want ErrPhaseFailed", err)
	}
	last := res.Phases[len(res.Phases)-1]
	if last.Name != PhaseServerReconnect || !strings.Contains(last.Error, "s2") {
		t.Fatalf("stopped at %s: %s", last.Name, last.Error)
	}
	if certs, _ := pki.ReadCertificates(f.clients["s1"].rootsFile); len(certs) != 2 {
		t.Errorf("s1 roots: %d certificate(s), want old+new", len(certs))
	}
	if n := f.clients["s1"].restartCount(); n != 1 {
		t.Errorf("s1 restarted %d times, want 1", n)
	}

	r, err = New(p, WithServers(f.servers()...), WithTarget("static", tg), WithPollInterval(100*time.Millisecond))
	must(t, err)
	if res, err := r.Abort(testContext(t)); err != nil {
		for _, ph := range res.Phases {
			t.Logf("%s ok=%v %s %s", ph.Name, ph.OK, ph.Observed, ph.Error)
		}
		t.Fatalf("Abort: %v", err)
	}
	for _, s := range f.cluster.Servers {
		if fp := fingerprintOf(t, s.CertFile); fp != oldCerts[s.Name] {
			t.Errorf("%s: certificate %s after abort, want the old one", s.Name, short(fp))
		}
	}
	for _, id := range []string{"s1", "s2"} {
		if certs, _ := pki.ReadCertificates(f.clients[id].rootsFile); len(certs) != 1 || !certs[0].Equal(f.cluster.ServerCA.Cert) {
			t.Errorf("%s roots not back to the old server CA", id)
		}
	}
	// Every member is connected again, s2 included.
	deadline := time.Now().Add(20 * time.Second)
	for len(f.presented(t)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("members not back after abort: %+v", f.presented(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A server that stops answering while trust_both watches the reload is
// not observed, not wrong: the run ends incomplete (exit 3), not failed.
func TestServerGoneDuringTrustWatchIsIncomplete(t *testing.T) {
	f := newFixture(t, 2)
	f.addClient("api-1", "api-1", false)
	p := f.plan([]string{"api-1"}, nil)
	p.Timeouts.Reload = 2 * time.Second
	reloads := 0
	hook := func(e Event) {
		if e.Kind == ServerReloaded && e.Phase == PhaseTrustBoth && e.OK {
			if reloads++; reloads == len(f.cluster.Servers) {
				f.cluster.Servers[1].Stop() // every reload taken; the watch starts next
			}
		}
	}
	r, err := New(p, WithServers(f.servers()...), WithEvents(hook), WithPollInterval(100*time.Millisecond))
	must(t, err)
	res, err := r.Run(testContext(t))
	if !errors.Is(err, ErrIncomplete) || errors.Is(err, ErrPhaseFailed) {
		t.Fatalf("Run: %v, want ErrIncomplete only", err)
	}
	if last := res.Phases[len(res.Phases)-1]; last.Name != PhaseTrustBoth {
		t.Errorf("last phase %+v", last)
	}
}

// A client of the servers that is no member of the plan is not rotated:
// preflight names it, as a warning, before anything is touched.
func TestPreflightWarnsOfNonMembers(t *testing.T) {
	f := newFixture(t, 1)
	f.addClient("api-1", "api-1", false)
	f.addClient("mon", "monitoring", false)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var observed string
	hook := func(e Event) {
		if e.Kind == PhaseEnded && e.Phase == PhasePreflight {
			observed = e.Detail
			cancel() // nothing past preflight is needed
		}
	}
	r, err := New(f.plan([]string{"api-1"}, nil), WithServers(f.servers()...), WithEvents(hook), WithPollInterval(100*time.Millisecond))
	must(t, err)
	if _, err := r.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run: %v, want ErrInterrupted", err)
	}
	if !strings.Contains(observed, "warning: 1 connection(s) of no member") || !strings.Contains(observed, "monitoring") || strings.Contains(observed, "api-1 ") {
		t.Errorf("preflight observed %q, want a warning naming monitoring only", observed)
	}
}
