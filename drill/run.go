package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/pki"
	"github.com/natscert/natscert/rotation"
)

// Run rehearses one rotation: it starts an embedded cluster, connects the
// simulated members, runs traffic, measures the handshake floor, rotates
// the members' client CA through the rotation package, and accounts for
// every message and request. The returned Result says whether every
// promise of the strategy held; an error means the drill itself could not
// run (the cluster did not start, a member could not connect) or was
// interrupted (ErrInterrupted).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &run{cfg: cfg, start: time.Now(), answers: newAnswerBook()}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "natscert-drill-*"); err != nil {
			return nil, fmt.Errorf("drill: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	defer d.close()
	res, err := d.run(ctx, dir)
	switch {
	case ctx.Err() != nil:
		if err == nil {
			err = context.Cause(ctx)
		}
	case err == nil && errors.Is(res.RotationErr, rotation.ErrInterrupted):
		err = res.RotationErr
	default:
		return res, err
	}
	// Stopped part-way: no promise was tested to the end, so the result
	// must not read as a broken one.
	return res, fmt.Errorf("drill: %w: %w", ErrInterrupted, err)
}

// ErrInterrupted: the context ended before the drill finished. Run
// returns it with what was measured so far, when anything was.
var ErrInterrupted = errors.New("interrupted")

// run is one drill in progress; its fields are owned by Run's goroutine
// unless they say otherwise.
type run struct {
	cfg     Config
	start   time.Time
	setup   *setup
	members []*member
	workers *workerPool // with Config.Processes
	target  *target
	answers *answerBook
	pub     *publisher
	req     *requester
	sampler *sampler

	progressMu sync.Mutex    // Progress is called from one goroutine at a time
	phases     []span        // the drill's own steps, for the report
	windowOpen atomic.Uint64 // first message of the loss window, once known
	phaseBegan time.Time     // start of the rotation's current phase, for progress
}

// span is one timed step of the drill around the rotation.
type span struct {
	name       string
	start, end time.Time
	observed   string
}

// note shows one of the drill's own steps.
func (d *run) note(format string, args ...any) { d.say(EventStep, fmt.Sprintf(format, args...)) }

func (d *run) say(kind EventKind, text string) {
	now := time.Now()
	d.progress(Event{Time: now, Elapsed: now.Sub(d.start), Kind: kind, Text: text})
}

func (d *run) progress(e Event) {
	if d.cfg.Progress == nil {
		return
	}
	d.progressMu.Lock()
	defer d.progressMu.Unlock()
	d.cfg.Progress(e)
}

// step times fn as one of the drill's own steps.
func (d *run) step(name string, fn func() (string, error)) error {
	sp := span{name: name, start: time.Now()}
	obs, err := fn()
	sp.end, sp.observed = time.Now(), obs
	d.phases = append(d.phases, sp)
	return err
}

func (d *run) run(ctx context.Context, dir string) (*Result, error) {
	cfg := d.cfg
	res := &Result{Config: cfg, Dir: dir}
	d.note("drill: %s strategy, %d clients on %d server(s), %d msg/s delivered, %d req/s, %d wave(s)",
		cfg.Strategy, cfg.Clients, cfg.Servers, cfg.Rate, cfg.RequestRate, cfg.Waves)

	// Fleet: cluster, members, harness.
	err := d.step("setup", func() (string, error) {
		s, err := newSetup(dir, cfg.Servers)
		if err != nil {
			return "", err
		}
		d.setup = s
		if err := d.startMembers(ctx); err != nil {
			return "", err
		}
		pnc, err := connectHarness(s, "natscert-drill-publisher", s.url(0))
		if err != nil {
			return "", err
		}
		rnc, err := connectHarness(s, "natscert-drill-requester", s.url(1))
		if err != nil {
			pnc.Close()
			return "", err
		}
		d.pub = &publisher{nc: pnc, interval: cfg.publishInterval()}
		d.req = &requester{nc: rnc, interval: time.Second / time.Duration(max(cfg.RequestRate, 1)),
			timeout: cfg.RequestTimeout, answers: d.answers}
		return fmt.Sprintf("%d server(s), %d member(s) connected and subscribed", cfg.Servers, cfg.Clients), nil
	})
	if err != nil {
		return nil, err
	}
	d.note("cluster up (%d servers), %d members connected and subscribed", cfg.Servers, cfg.Clients)

	// Timeline, for the whole run from here.
	d.sampler = d.newSampler()
	var bg sync.WaitGroup
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer func() { stopSampling(); bg.Wait() }()
	bg.Add(1)
	go func() { defer bg.Done(); d.sampler.run(sampleCtx) }()

	// Traffic: the publisher first; the loss window opens once every
	// member has received from it, so that interest still spreading over
	// the routes is not counted as loss.
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	var pubDone, reqDone sync.WaitGroup
	var windowStart uint64
	pubDone.Add(1)
	go func() { defer pubDone.Done(); d.pub.run(trafficCtx) }()
	err = d.step("warm-up", func() (string, error) {
		if err := d.waitAllReceived(ctx, 15*time.Second); err != nil {
			return "", err
		}
		windowStart = d.pub.last.Load() + 1
		return fmt.Sprintf("every member receives the stream; loss window opens at message %d", windowStart), nil
	})
	if err != nil {
		stopTraffic()
		pubDone.Wait()
		return nil, err
	}
	reqDone.Add(1)
	go func() { defer reqDone.Done(); d.req.run(trafficCtx) }()
	d.note("traffic flowing: %v between fan-out messages, %d members each; requests every %v",
		cfg.publishInterval(), cfg.Clients, d.req.interval)

	// The floor, under the same load as the rotation will see.
	var fl Floor
	err = d.step("floor", func() (string, error) {
		var err error
		fl, err = measureFloor(ctx, d.setup, max(cfg.Clients, 50), cfg.Clients)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d mTLS connects with %d dialers in %v: %.0f/s", fl.Dials, floorDialers, fl.Elapsed.Round(time.Millisecond), fl.PerSec), nil
	})
	if err != nil {
		stopTraffic()
		pubDone.Wait()
		reqDone.Wait()
		return nil, err
	}
	res.Floor = fl
	d.note("handshake floor: %.0f mTLS connects/s (%d dials, %d dialers): %d members need at least %v",
		fl.PerSec, fl.Dials, floorDialers, cfg.Clients, fl.Duration.Round(time.Millisecond))

	_ = d.step("steady before", func() (string, error) {
		sleepCtx(ctx, cfg.Steady)
		return fmt.Sprintf("traffic for %v before the rotation", cfg.Steady), nil
	})

	// The rotation itself, by the rotation package.
	d.note("rotation: %s, %d wave(s) of up to %d", map[bool]string{true: "restart mode", false: "reload mode"}[cfg.Strategy == StrategyRestart], cfg.Waves, d.waveSize())
	rotStart := time.Now()
	rot, rotErr := d.rotate(ctx)
	res.Rotation, res.RotationErr = rot, rotErr
	rotEnd := time.Now()
	if rotErr != nil {
		d.note("rotation failed: %v", rotErr)
	} else {
		d.note("rotation done in %v", rotEnd.Sub(rotStart).Round(time.Millisecond))
	}
	res.ServerCerts = d.serverCertTally(rot)
	if sc := res.ServerCerts; sc.Servers > 0 {
		d.note("server certificates %s", sc)
	}

	if ctx.Err() == nil {
		_ = d.step("steady after", func() (string, error) {
			sleepCtx(ctx, cfg.Steady)
			return fmt.Sprintf("traffic for %v after the rotation", cfg.Steady), nil
		})
	}

	// End of traffic, then the drain: every message published must have
	// had its chance to arrive before the window is counted.
	stopTraffic()
	pubDone.Wait()
	windowEnd := d.pub.last.Load()
	_ = d.step("drain", func() (string, error) {
		reqDone.Wait()
		if cfg.Processes {
			// Workers report their ledgers when they stop, after their
			// own drain; the second lets the last messages cross the
			// routes first.
			time.Sleep(time.Second)
			for _, m := range d.members {
				m.stop()
			}
			return "every worker stopped with SIGTERM and reported its ledger", nil
		}
		missing := d.waitAllReached(windowEnd, 5*time.Second)
		if missing > 0 {
			return fmt.Sprintf("%d member(s) never received the last message", missing), nil
		}
		return "every member received the last message; every request answered or timed out", nil
	})
	stopSampling()
	bg.Wait()

	d.account(res, windowStart, windowEnd, rotStart, rotEnd)
	res.Duration = time.Since(d.start)
	d.note("done in %v: %s", res.Duration.Round(100*time.Millisecond), res.verdictLine())
	return res, nil
}

// startMembers creates and connects every member, a few at a time: a
// fleet starting all at once would measure the start-up storm, not the
// rotation.
func (d *run) startMembers(ctx context.Context) error {
	d.target = &target{byName: map[string]*member{}, delivered: map[string]time.Time{}}
	order := make([]int, d.cfg.Clients)
	for i := range order {
		order[i] = i
	}
	// The seed decides which members move together in a wave.
	rng := rand.New(rand.NewPCG(uint64(d.cfg.Seed), 0x6e617473))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	spread := max(10*time.Millisecond, time.Duration(d.waveSizeFor(d.cfg.Clients))*time.Millisecond)
	for _, i := range order {
		m, err := newMember(d.setup, i, d.cfg.Strategy, d.answers)
		if err != nil {
			return err
		}
		m.spread = spread
		d.members = append(d.members, m)
		d.target.byName[m.name] = m
	}
	if d.cfg.Processes {
		return d.startWorkers(ctx)
	}
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(d.members))
	var wg sync.WaitGroup
	for _, m := range d.members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := m.start(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func (d *run) waveSizeFor(n int) int { return (n + d.cfg.Waves - 1) / d.cfg.Waves }

func collect(ch chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
		if len(out) == 3 {
			break
		}
	}
	return out
}

func (d *run) newSampler() *sampler {
	v := &view{old: map[string]int{}, new: map[string]int{}, members: len(d.members)}
	for _, m := range d.members {
		v.old[pki.CertSHA256(m.old.Cert)] = m.idx
		v.new[pki.CertSHA256(m.new.Cert)] = m.idx
	}
	received := func() int64 {
		var n int64
		for _, m := range d.members {
			n += m.ledger.Deliveries()
		}
		return n
	}
	if d.cfg.Processes {
		received = nil // the servers count for the workers
	}
	return &sampler{
		start: d.start, servers: d.setup.cluster.Servers, view: v, progress: d.progress,
		received: received,
		failures: func() int64 {
			n := d.req.failures()
			for _, m := range d.members {
				n += m.tlsFailures.Load()
			}
			return n
		},
		lost: func() int64 {
			var n int64
			for _, m := range d.members {
				if mx := m.ledger.Max(); mx > 0 && d.pub != nil {
					n += m.ledger.Count(d.lossFrom(), mx).Lost
				}
			}
			return n
		},
	}
}

// lossFrom is where the live display starts counting losses: the first
// message after warm-up, or the start of the stream before it is known.
func (d *run) lossFrom() uint64 { return d.windowOpen.Load() }

// waitAllReceived waits until every member has received at least one
// fan-out message.
func (d *run) waitAllReceived(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		waiting := d.notReceiving()
		if waiting == 0 {
			d.windowOpen.Store(d.pub.last.Load() + 1)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drill: %d member(s) received nothing within %v of the stream starting", waiting, timeout)
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("drill: %w", ctx.Err())
		}
	}
}

// notReceiving counts the members that have received no fan-out message
// yet. A worker process tells only at exit, so for workers the servers
// tell instead: a message sent to the worker's connection. Until requests
// start, fan-out messages are all the servers send the members.
func (d *run) notReceiving() int {
	var sent map[string]int64
	if d.cfg.Processes {
		sent = map[string]int64{}
		for _, s := range d.setup.cluster.Servers {
			if s.NATS == nil {
				continue
			}
			cz, err := s.NATS.Connz(&server.ConnzOptions{Limit: 1 << 20})
			if err != nil {
				continue
			}
			for _, c := range cz.Conns {
				sent[c.Name] += c.OutMsgs
			}
		}
	}
	n := 0
	for _, m := range d.members {
		got := m.ledger.Max() > 0
		if d.cfg.Processes {
			got = sent[m.name] > 0
		}
		if !got {
			n++
		}
	}
	return n
}

// waitAllReached waits until every member has received message last (or
// timeout), and returns how many never did.
func (d *run) waitAllReached(last uint64, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for _, m := range d.members {
			if m.ledger.Max() < last {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *run) close() {
	for _, m := range d.members {
		m.stop()
	}
	if d.workers != nil {
		d.workers.stop()
	}
	if d.pub != nil {
		d.pub.nc.Close()
	}
	if d.req != nil {
		d.req.nc.Close()
	}
	if d.setup != nil {
		d.setup.close()
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var _ rotation.Target = (*target)(nil)
