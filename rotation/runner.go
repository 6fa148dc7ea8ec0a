package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/natscert/natscert/budget"
	"github.com/natscert/natscert/fleet"
)

// Runner runs one plan's rotation, resumes it, or aborts it.
type Runner struct {
	plan    *Plan
	servers []Server
	src     fleet.Source // every server's view, through package fleet
	custom  bool         // servers given by WithServers
	targets map[string]Target
	onEvent func(Event)
	onGate  func(context.Context, GateFailure) GateDecision
	log     *slog.Logger
	poll    time.Duration
	journal string

	// Set by a run.
	runCtx context.Context
	j      *Journal
	mat    *loaded
	mu     sync.Mutex // guards res and serializes events
	gateMu sync.Mutex // one gate decision at a time (parallel workloads)
	res    *Result
	kicked map[string]bool
}

// Option configures a Runner.
type Option func(*Runner)

// WithServers replaces the plan's servers with these, e.g. EmbeddedServer
// values for in-process servers. The plan's servers list may then be empty.
func WithServers(s ...Server) Option { return func(r *Runner) { r.servers, r.custom = s, true } }

// WithTarget delivers to and restarts the members of workload through t
// instead of the plan's commands.
func WithTarget(workload string, t Target) Option {
	return func(r *Runner) { r.targets[workload] = t }
}

// WithEvents calls fn for every event, synchronously and in order.
func WithEvents(fn func(Event)) Option { return func(r *Runner) { r.onEvent = fn } }

// WithGateFailure decides what a failed gate does; by default the plan's
// on_gate_failure (stop when unset). fn is never called by two
// workloads at once: with parallel workloads the others wait, so fn may
// prompt an operator.
func WithGateFailure(fn func(context.Context, GateFailure) GateDecision) Option {
	return func(r *Runner) { r.onGate = fn }
}

// WithLogger logs progress to l; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithPollInterval sets how often servers are polled while waiting;
// default 250 ms.
func WithPollInterval(d time.Duration) Option { return func(r *Runner) { r.poll = d } }

// WithJournal puts the journal at path instead of the state directory.
func WithJournal(path string) Option { return func(r *Runner) { r.journal = path } }

// New checks the plan and returns its Runner. Nothing is read or touched
// until Run, Resume or Abort.
func New(p *Plan, opts ...Option) (*Runner, error) {
	if p == nil {
		return nil, fmt.Errorf("rotation: %w: nil plan", ErrPlan)
	}
	r := &Runner{plan: p, targets: map[string]Target{}, poll: 250 * time.Millisecond, log: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	if r.custom && len(p.Servers) == 0 {
		// Servers come from the caller; validate the rest of the plan
		// against a placeholder.
		q := *p
		q.Servers = []ServerSpec{{ClientURL: "tls://x", MonitorURL: "http://x", CAFile: "x", Reload: ReloadSpec{Method: ReloadNone},
			System: &SystemAccount{User: "x"}, CertFile: "x", KeyFile: "x", PinnedCertsFile: "x"}}
		if err := q.Validate(); err != nil {
			return nil, err
		}
	} else if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(r.servers) == 0 && !r.custom {
		for _, s := range p.Servers {
			// Roots and certificates are set once material is loaded.
			r.servers = append(r.servers, HostServer(p, s, nil))
		}
	}
	if len(r.servers) == 0 {
		return nil, fmt.Errorf("rotation: %w: no servers", ErrPlan)
	}
	var urls []string
	for _, s := range r.servers {
		urls = append(urls, s.MonitorURL())
	}
	r.src = fleet.Monitor(urls...)
	for i := range p.Workloads {
		w := &p.Workloads[i]
		if _, ok := r.targets[w.Name]; !ok {
			if w.Mode == ModeRestart && w.Restart == nil {
				return nil, fmt.Errorf("rotation: %w: workloads[%d].restart: mode restart needs a restart command (or a Target)", ErrPlan, i)
			}
			r.targets[w.Name] = CommandTarget(p, w)
		}
	}
	if r.journal == "" {
		r.journal = filepath.Join(p.stateDir(), JournalFile)
	}
	return r, nil
}

// Run starts the rotation. It refuses when the journal holds an unfinished
// rotation (ErrInProgress): resume or abort that one.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	return r.start(ctx, false)
}

// Resume continues a rotation from its journal: completed steps are
// skipped, steps left in doubt are observed again before anything is
// repeated, and a completed restart is never repeated.
func (r *Runner) Resume(ctx context.Context) (*Result, error) {
	return r.start(ctx, true)
}

func (r *Runner) start(ctx context.Context, resume bool) (*Result, error) {
	lock, err := lockStateDir(r.plan.stateDir())
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	j, err := OpenJournal(r.journal)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r.j = j
	switch st := j.State("rotation"); {
	case !resume && st != "":
		return nil, fmt.Errorf("rotation: %w (%s, journal %s): resume or abort it, or use a new state_dir", ErrInProgress, st, j.Path())
	case resume && st == "":
		return nil, fmt.Errorf("rotation: %w: the journal %s holds no rotation", ErrNotResumable, j.Path())
	case resume && st == StepDone:
		return nil, fmt.Errorf("rotation: %w: the rotation in %s has finished", ErrNotResumable, j.Path())
	case resume && j.State("aborted") != "":
		// Even an abort left half-way may have restored old trust:
		// resuming on top of it would roll on material it undid.
		return nil, fmt.Errorf("rotation: %w: the rotation in %s was aborted (%s); finish with abort", ErrNotResumable, j.Path(), j.State("aborted"))
	}
	return r.execute(ctx)
}

// execute runs the phases in order, each entered only after the previous
// one was observed.
func (r *Runner) execute(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.runCtx = ctx
	r.res = &Result{Plan: r.plan.Name, Start: time.Now(), Outcome: "failed"}
	r.kicked = map[string]bool{}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stops the sampler before wg.Wait

	fns := map[string]func(context.Context) (string, error){
		PhasePreflight: r.preflight, PhaseTrustBoth: r.trustBoth,
		PhaseServerRoots: r.serverRoots, PhaseServerCerts: r.serverCerts,
		PhaseServerReconnect: r.serverReconnect, PhaseServerRootsNew: r.serverRootsNew,
		PhaseWaves: r.waves, PhaseConverged: r.converged, PhaseRevoke: r.revoke, PhaseProof: r.proof,
	}
	var err error
	for i, name := range r.plan.phases() {
		if i == 1 {
			// Material is loaded: sample the servers' view for the timeline.
			wg.Add(1)
			go func() { defer wg.Done(); r.sample(ctx) }()
		}
		// Preflight runs again on resume; every other phase is skipped
		// when the journal says an earlier run completed it.
		if err = r.phase(ctx, name, name != PhasePreflight, fns[name]); err != nil {
			break
		}
		if name == PhasePreflight && r.j.State("rotation") == "" {
			// Begun only once preflight passed: a preflight that fails
			// has touched nothing, and leaves nothing to resume or abort.
			if err = r.j.Write("rotation", StepBegin, r.plan.Name, nil); err != nil {
				break
			}
		}
	}
	r.finish(err, "completed")
	if err == nil {
		if jerr := r.j.Write("rotation", StepDone, "rotated and proven", nil); jerr != nil {
			err = jerr
		}
	}
	return r.res, err
}

// phase runs one phase, journaled, with its events and record.
func (r *Runner) phase(ctx context.Context, name string, once bool, fn func(context.Context) (string, error)) error {
	step := "phase:" + name
	rec := PhaseRecord{Name: name, Start: time.Now()}
	if once && r.j.State(step) == StepDone {
		rec.End, rec.OK, rec.Skipped, rec.Observed = rec.Start, true, true, "completed by an earlier run (journal)"
		r.addPhase(rec)
		r.emit(Event{Kind: StepSkipped, Phase: name, OK: true, Detail: rec.Observed})
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rotation: %w: before %s: %w", ErrInterrupted, name, context.Cause(ctx))
	}
	r.emit(Event{Kind: PhaseStarted, Phase: name})
	r.log.Info("rotation: phase started", "phase", name)
	if err := r.j.Write(step, StepBegin, "", nil); err != nil {
		return err
	}
	observed, err := fn(ctx)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrInterrupted) {
		err = fmt.Errorf("rotation: %w: %s: %w", ErrInterrupted, name, err)
	}
	rec.End, rec.Observed, rec.OK = time.Now(), observed, err == nil
	if err != nil {
		rec.Error = err.Error()
		_ = r.j.Write(step, StepFailed, err.Error(), nil)
	} else {
		r.emit(Event{Kind: PhaseObserved, Phase: name, OK: true, Detail: observed})
		if jerr := r.j.Write(step, StepDone, observed, nil); jerr != nil {
			err = jerr
		}
	}
	r.addPhase(rec)
	r.emit(Event{Kind: PhaseEnded, Phase: name, OK: err == nil, Detail: errText(err, observed)})
	r.log.Info("rotation: phase ended", "phase", name, "ok", err == nil, "observed", observed, "err", err)
	return err
}

func errText(err error, observed string) string {
	if err != nil {
		return err.Error()
	}
	return observed
}

func (r *Runner) addPhase(p PhaseRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Phases = append(r.res.Phases, p)
}

// emit stamps and delivers an event.
func (r *Runner) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if r.onEvent == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onEvent(e)
}

// finish fills the result's outcome and members; done is the outcome
// when err is nil: completed (a run) or aborted (an abort).
func (r *Runner) finish(err error, done string) {
	res := r.res
	res.End = time.Now()
	switch {
	case err == nil:
		res.OK, res.Outcome = done == "completed", done
	case errors.Is(err, ErrPaused):
		res.Outcome = "paused"
	case errors.Is(err, ErrInterrupted):
		res.Outcome = "interrupted"
	}
	if err != nil {
		res.Error = err.Error()
	}
	if r.mat != nil {
		// One last look for the members' outcome, after the run's context
		// may have ended (an interrupt): bounded, so that unreachable
		// servers cannot hold the exit for scans × HTTP timeouts.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.runCtx), 5*time.Second)
		st, err := r.look(ctx, r.mat.members)
		cancel()
		for i, m := range r.mat.members {
			mr := MemberResult{Member: m.Member, Kicked: r.kicked[m.Name]}
			mr.Delivered = r.j.State("deliver:"+m.Name) == StepDone
			for _, rec := range r.j.Records() {
				if rec.Step == "restart:"+m.Name && rec.State == StepDone {
					mr.Restarts++
				}
			}
			mr.OnNew = err == nil && onNew(st, i, m)
			res.Members = append(res.Members, mr)
		}
	}
	r.emit(Event{Kind: RotationEnded, OK: err == nil, Detail: errText(err, res.Outcome)})
}

// sample records the timeline until ctx ends.
func (r *Runner) sample(ctx context.Context) {
	obs, err := r.observer(r.mat.members, false, 0)
	if err != nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if st, err := obs.Poll(ctx); err == nil && len(st.MissingServers) == 0 {
			s := Sample{At: st.Time}
			for _, e := range st.Expected {
				s.New += e.Counts.New
				s.Old += e.Counts.Old
				s.Unknown += e.Counts.Unknown + e.Counts.None
			}
			r.mu.Lock()
			r.res.Samples = append(r.res.Samples, s)
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// phases are the phases a run of p goes through, in order.
func (p *Plan) phases() []string {
	out := []string{PhasePreflight, PhaseTrustBoth}
	if p.Material.NewServerCA != "" {
		out = append(out, PhaseServerRoots)
	}
	if p.Material.ServerCerts != nil {
		out = append(out, PhaseServerCerts)
	}
	if p.Material.NewServerCA != "" {
		out = append(out, PhaseServerReconnect, PhaseServerRootsNew)
	}
	return append(out, PhaseWaves, PhaseConverged, PhaseRevoke, PhaseProof)
}

// Schedule is the dry run of a plan: what would happen, in which order,
// and the budget. Nothing is read from the servers nor touched.
type Schedule struct {
	Plan   string          `json:"plan"`
	Phases []string        `json:"phases"`
	Waves  []ScheduledWave `json:"waves"`
	Budget budget.Estimate `json:"budget"`
	// Parallel: workloads roll at the same time.
	Parallel bool `json:"parallel"`
}

// ScheduledWave is one planned wave.
type ScheduledWave struct {
	Workload string   `json:"workload"`
	Index    int      `json:"index"`
	Mode     Mode     `json:"mode"`
	Members  []string `json:"members"`
}

// Schedule works out the waves and budget of p.
func (p *Plan) Schedule() (*Schedule, error) {
	est, err := p.Estimate()
	if err != nil {
		return nil, err
	}
	s := &Schedule{Plan: p.Name, Budget: est, Parallel: p.Parallel, Phases: append(p.phases(), PhaseReport)}
	for i := range p.Workloads {
		w := &p.Workloads[i]
		for wi, wave := range chunk(w.Members, w.waveSize()) {
			sw := ScheduledWave{Workload: w.Name, Index: wi + 1, Mode: w.Mode}
			for _, m := range wave {
				sw.Members = append(sw.Members, m.Name)
			}
			s.Waves = append(s.Waves, sw)
		}
	}
	return s, nil
}

// Estimate is the plan's budget: the workloads' waves one after the other,
// or the longest workload when they roll in parallel.
func (p *Plan) Estimate() (budget.Estimate, error) {
	return p.estimate(len(p.Servers))
}

// estimate is Estimate for members that know servers server URLs: a
// runner's servers may come from WithServers, not the plan.
func (p *Plan) estimate(servers int) (budget.Estimate, error) {
	var total budget.Estimate
	for i := range p.Workloads {
		w := &p.Workloads[i]
		restart := time.Duration(0)
		if w.Mode == ModeRestart {
			restart = or(p.Budget.RestartTime, time.Second)
		}
		e, err := budget.Compute(budget.Input{
			ReconnectWait:    or(p.Budget.ReconnectWait, 2*time.Second),
			HandshakeTimeout: or(p.Budget.HandshakeTimeout, 2*time.Second),
			Members:          len(w.Members),
			MaxUnavailable:   w.waveSize(),
			RestartTime:      restart,
			Pause:            w.Waves.Pause,
			Servers:          servers,
		})
		if err != nil {
			return budget.Estimate{}, fmt.Errorf("rotation: budget of workload %s: %w", w.Name, err)
		}
		if i == 0 {
			total = e
			continue
		}
		total.Cycle, total.WorstCycle = max(total.Cycle, e.Cycle), max(total.WorstCycle, e.WorstCycle)
		total.WaveWindow, total.WorstWaveWindow = max(total.WaveWindow, e.WaveWindow), max(total.WorstWaveWindow, e.WorstWaveWindow)
		if p.Parallel {
			total.Waves = max(total.Waves, e.Waves)
			total.Total, total.WorstTotal = max(total.Total, e.Total), max(total.WorstTotal, e.WorstTotal)
		} else {
			total.Waves += e.Waves
			total.Total += e.Total
			total.WorstTotal += e.WorstTotal
		}
	}
	total.SLA = p.SLA
	total.Fits = p.SLA <= 0 || total.Total <= p.SLA
	total.WorstFits = p.SLA <= 0 || total.WorstTotal <= p.SLA
	return total, nil
}

func chunk[T any](xs []T, n int) [][]T {
	var out [][]T
	for len(xs) > 0 {
		k := min(n, len(xs))
		out = append(out, xs[:k])
		xs = xs[k:]
	}
	return out
}
