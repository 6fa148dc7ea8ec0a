package drill

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/natscert/natscert/pki"
	"github.com/natscert/natscert/rotation"
)

// workloadName is the one workload of a drill's plan.
const workloadName = "fleet"

// plan builds the rotation plan of the drill: the embedded servers, the
// old and new client CAs, the members with their new leaves, in waves,
// and the servers' own certificates renewed.
//
// The servers start trusting the old client CA and the harness CA; the
// plan's new client CA file holds the new CA and the harness CA, so that
// the rotation's trust-both (old+new) and revoke (new only) both keep the
// drill's own publisher and requester trusted while members move.
//
// The servers' leaves are renewed from the server CA that issued them,
// which every member's roots already hold: the renewal must cost the
// members nothing, and the drill measures that it does.
func (d *run) plan() (*rotation.Plan, error) {
	s := d.setup
	serverCA, serverCAKey := filepath.Join(s.dir, "server-ca.pem"), filepath.Join(s.dir, "server-ca-key.pem")
	if err := s.cluster.ServerCA.WriteFiles(serverCA, serverCAKey); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	newTrust, err := pki.Bundle(s.newCA.CertPEM, s.harness.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	newTrustFile := filepath.Join(s.dir, "client-ca-new-trust.pem")
	if err := pki.WriteFileAtomic(newTrustFile, newTrust, 0o644); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	probes := filepath.Join(s.dir, "probes")
	if err := os.MkdirAll(probes, 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	pOld, err := s.oldCA.Issue("natscert drill probe (old)", pki.RoleClient)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	pNew, err := s.newCA.Issue("natscert drill probe (new)", pki.RoleClient)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	oldPair := rotation.KeyPair{Cert: filepath.Join(probes, "old.pem"), Key: filepath.Join(probes, "old-key.pem")}
	newPair := rotation.KeyPair{Cert: filepath.Join(probes, "new.pem"), Key: filepath.Join(probes, "new-key.pem")}
	if err := pOld.WriteFiles(oldPair.Cert, oldPair.Key); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if err := pNew.WriteFiles(newPair.Cert, newPair.Key); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	mode := rotation.ModeReload
	if d.cfg.Strategy == StrategyRestart {
		mode = rotation.ModeRestart
	}
	w := rotation.Workload{
		Name:  workloadName,
		Mode:  mode,
		Waves: rotation.WaveSpec{Size: d.waveSize(), Pause: d.cfg.Pause},
		Gates: rotation.GateSpec{Timeout: 60 * time.Second, Settle: time.Second},
	}
	for _, m := range d.members {
		w.Members = append(w.Members, rotation.MemberSpec{
			Name: m.name, Match: rotation.MatchName,
			CertFile: m.certFile, KeyFile: m.keyFile,
			New: rotation.KeyPair{Cert: m.newCert, Key: m.newKey},
		})
	}
	return &rotation.Plan{
		Name:          "drill",
		StateDir:      filepath.Join(s.dir, "rotation"),
		OnGateFailure: rotation.GateAbort,
		Material: rotation.Material{
			ServerCA:    s.cluster.ServerCAFile(),
			OldClientCA: filepath.Join(s.dir, "client-ca-old.pem"),
			NewClientCA: newTrustFile,
			Probe:       rotation.ProbeMaterial{Old: oldPair, New: newPair},
			ServerCerts: &rotation.ServerCerts{CA: serverCA, CAKey: serverCAKey},
		},
		Workloads: []rotation.Workload{w},
		Budget:    d.budgetSpec(),
	}, nil
}

// budgetSpec is what the budget needs to know about the members: how they
// reconnect and how long a restart takes.
func (d *run) budgetSpec() rotation.BudgetSpec {
	b := rotation.BudgetSpec{ReconnectWait: 500 * time.Millisecond, HandshakeTimeout: 2 * time.Second}
	if d.cfg.Strategy == StrategyRestart {
		b.RestartTime = 100 * time.Millisecond
	}
	return b
}

func (d *run) waveSize() int { return (len(d.members) + d.cfg.Waves - 1) / d.cfg.Waves }

// target moves the drill's members for the rotation: new files written
// where each member reads them and, in restart mode, the member stopped
// and started again on them. It records when each member was handed its
// material, for the convergence time.
type target struct {
	byName map[string]*member

	mu        sync.Mutex
	delivered map[string]time.Time
}

func (t *target) Deliver(_ context.Context, rm rotation.Member, f rotation.Files) error {
	m, ok := t.byName[rm.Name]
	if !ok {
		return fmt.Errorf("drill: deliver: unknown member %s", rm.Name)
	}
	t.mu.Lock()
	if _, seen := t.delivered[rm.Name]; !seen {
		t.delivered[rm.Name] = time.Now()
	}
	t.mu.Unlock()
	return m.deliver(f.CertPEM, f.KeyPEM)
}

func (t *target) Restart(ctx context.Context, rm rotation.Member) error {
	m, ok := t.byName[rm.Name]
	if !ok {
		return fmt.Errorf("drill: restart: unknown member %s", rm.Name)
	}
	return m.restart(ctx)
}

// rotate runs the rotation package's state machine against the cluster
// and the members, reporting its phases and waves as progress.
func (d *run) rotate(ctx context.Context) (*rotation.Result, error) {
	plan, err := d.plan()
	if err != nil {
		return nil, err
	}
	var servers []rotation.Server
	for _, s := range d.setup.cluster.Servers {
		servers = append(servers, rotation.EmbeddedServer(s))
	}
	r, err := rotation.New(plan,
		rotation.WithServers(servers...),
		rotation.WithTarget(workloadName, d.target),
		rotation.WithEvents(d.onRotationEvent),
		rotation.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	return r.Run(ctx)
}

// onRotationEvent turns the rotation's phase and wave events into
// EventPhase lines; member-level events are too many to show. The rotation
// delivers events one at a time, so phaseBegan needs no lock.
func (d *run) onRotationEvent(e rotation.Event) {
	switch e.Kind {
	case rotation.PhaseStarted:
		d.phaseBegan = e.Time
		d.notePhase(fmt.Sprintf("phase %s started", e.Phase), "")
	case rotation.PhaseEnded:
		took := e.Time.Sub(d.phaseBegan).Round(time.Millisecond)
		if e.OK {
			d.notePhase(fmt.Sprintf("phase %s observed in %v", e.Phase, took), e.Detail)
		} else {
			d.notePhase(fmt.Sprintf("phase %s FAILED after %v", e.Phase, took), e.Detail)
		}
	case rotation.WaveStarted:
		d.notePhase(fmt.Sprintf("wave %d started: %d member(s)", e.Wave, d.waveMembers(e.Wave)), "")
	case rotation.WaveEnded:
		if e.OK {
			d.notePhase(fmt.Sprintf("wave %d gated", e.Wave), e.Detail)
		} else {
			d.notePhase(fmt.Sprintf("wave %d FAILED", e.Wave), e.Detail)
		}
	case rotation.ConnKicked:
		d.notePhase(fmt.Sprintf("kicked %s on %s: %s", e.Member, e.Server, e.Detail), "")
	}
}

// notePhase shows head and a rotation's detail. The rotation joins what
// it observed on each server with "; ": when that is long, one indented
// line a part reads better in a log than one clipped line.
func (d *run) notePhase(head, detail string) {
	switch {
	case detail == "":
		d.say(EventPhase, head)
		return
	case len(detail) <= 100:
		d.say(EventPhase, head+": "+detail)
		return
	}
	parts := strings.Split(detail, "; ")
	d.say(EventPhase, head+":")
	const most = 8
	for i, part := range parts {
		if i == most {
			d.say(EventPhase, fmt.Sprintf("    ... %d more", len(parts)-most))
			break
		}
		d.say(EventPhase, "    "+clip(part, 200))
	}
}

func (d *run) waveMembers(wave int) int {
	size := d.waveSize()
	n := len(d.members) - (wave-1)*size
	return max(0, min(size, n))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
