package drill

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/natscert/natscert/internal/workerreport"
	"github.com/natscert/natscert/rotation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// smallConfig is a drill small enough for -race on a shared 2-core box.
func smallConfig(t *testing.T, s Strategy) Config {
	var out strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("\n" + out.String())
		}
	})
	d := NewProgress(&lockedWriter{b: &out}, false)
	return Config{
		Strategy: s, Clients: 12, Servers: 2, Rate: 600, RequestRate: 40, Waves: 3,
		Steady: 500 * time.Millisecond, Pause: 200 * time.Millisecond,
		// Swap promises no failed request; a reply slower than 2 s under
		// -race on a loaded box is the box, not the swap.
		RequestTimeout: 10 * time.Second,
		Dir:            t.TempDir(), Progress: d.Event,
	}
}

// Swap loses nothing through the whole rotation, the renewal of the
// servers' own certificates included: the members' roots hold the server
// CA, so the new server leaves are transparent to them.
func TestDrillSwapLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := smallConfig(t, StrategySwap)
	var phaseLines []string
	show := cfg.Progress
	cfg.Progress = func(e Event) {
		if e.Kind == EventPhase && strings.HasPrefix(e.Text, "phase ") {
			phaseLines = append(phaseLines, e.Text)
		}
		show(e)
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sum strings.Builder
	_ = res.WriteSummary(&sum)
	t.Log("\n" + sum.String())
	if !res.OK() {
		t.Fatalf("drill not OK: %v", res.Report.Broken)
	}
	if res.Messages.Published == 0 || res.Messages.Expected != res.Messages.Published*12 {
		t.Fatalf("window: %+v", res.Messages)
	}
	if !res.Report.OldCertRejected {
		t.Fatal("old_cert_rejected false")
	}
	if sc := res.ServerCerts; sc.Servers != 2 || sc.Renewed != 2 {
		t.Errorf("server certificates: %+v", sc)
	}
	if !strings.Contains(sum.String(), "renewed 2/2, new fingerprint observed") {
		t.Error("the summary does not say the server certificates were renewed")
	}
	var inReport bool
	seen := map[string]bool{}
	for _, ph := range res.Report.Phases {
		inReport = inReport || ph.Name == rotation.PhaseServerCerts && ph.OK
		if seen[ph.Name] {
			t.Errorf("phase %q is in the report twice", ph.Name)
		}
		seen[ph.Name] = true
	}
	if !inReport {
		t.Error("the report has no server_certs phase")
	}
	if !slices.ContainsFunc(phaseLines, func(l string) bool { return strings.HasPrefix(l, "phase server_certs observed") }) {
		t.Errorf("progress did not show server_certs observed: %q", phaseLines)
	}
}

// Restart and reconnect promise less than swap: the rotation completes
// and the proof passes; what they lose is measured and reported.
func TestDrillRestartAndReconnect(t *testing.T) {
	for _, s := range []Strategy{StrategyRestart, StrategyReconnect} {
		t.Run(string(s), func(t *testing.T) {
			// A deadline so that a hang fails here rather than at go
			// test's timeout. The CLI's context has none: TestDrillCommand
			// runs without one, and members set their own start deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := Run(ctx, smallConfig(t, s))
			if err != nil {
				t.Fatal(err)
			}
			var sum strings.Builder
			_ = res.WriteSummary(&sum)
			t.Log("\n" + sum.String())
			if !res.OK() {
				t.Fatalf("drill not OK: %v", res.Report.Broken)
			}
			var attempts int64
			for _, m := range res.Report.Members {
				attempts += m.ReconnectAttempts
				if !m.OnNew {
					t.Errorf("%s not on new material", m.Name)
				}
			}
			if attempts < int64(len(res.Report.Members)) {
				t.Errorf("reconnect attempts %d, want at least one per member", attempts)
			}
			if res.Report.Lost.Messages != res.Messages.Lost {
				t.Errorf("report lost %d, tally %d", res.Report.Lost.Messages, res.Messages.Lost)
			}
		})
	}
}

// Interrupted once the rotation has begun, a drill is not a broken
// promise: Run says ErrInterrupted (the CLI exits 4), and Compare starts
// no further strategy.
func TestDrillInterruptedDuringRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var started []Strategy
	results, err := Compare(ctx, smallConfig(t, StrategyRestart), func(s Strategy) Progress {
		started = append(started, s)
		return func(e Event) {
			if strings.HasPrefix(e.Text, "rotation: ") {
				cancel()
			}
		}
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err %v, want ErrInterrupted", err)
	}
	if len(results) != 0 || len(started) != 1 {
		t.Fatalf("%d results, strategies started %v: want the first interrupted and no other", len(results), started)
	}
}

// Members as examples/worker processes: the drill builds the worker,
// starts one process per member, and counts each member exactly from the
// report its worker writes at exit, as it counts in-process members.
func TestDrillProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs worker processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := smallConfig(t, StrategySwap)
	cfg.Clients, cfg.Servers, cfg.Waves, cfg.Processes = 5, 2, 2, true
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sum strings.Builder
	_ = res.WriteSummary(&sum)
	t.Log("\n" + sum.String())
	if !res.OK() {
		t.Fatalf("drill not OK: %v", res.Report.Broken)
	}
	if acct, _ := res.Report.Setup["loss_accounting"].(string); !strings.HasPrefix(acct, "exact:") || strings.Contains(acct, "without a report") {
		t.Errorf("loss_accounting %q", acct)
	}
	mt := res.Messages
	if mt.WindowFrom < 2 || mt.Published == 0 || mt.Expected != mt.Published*5 || mt.Lost != 0 || res.Requests.Answered == 0 {
		t.Fatalf("messages %+v, requests %+v", mt, res.Requests)
	}
	for _, m := range res.Report.Members {
		if !m.OnNew || m.ReconnectAttempts == 0 || m.Lost.Messages != 0 {
			t.Errorf("%s: on new %v, %d reconnect attempts, %d lost", m.Name, m.OnNew, m.ReconnectAttempts, m.Lost.Messages)
		}
		r, err := workerreport.Read(filepath.Join(res.Dir, "members", m.Name, "worker-1.json"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Swaps == 0 || r.Status.Presented == nil || r.Status.Presented.CertSHA256 != m.NewCertSHA256 {
			t.Errorf("%s: worker status %d swaps, presented %+v", m.Name, r.Status.Swaps, r.Status.Presented)
		}
	}
}

// TestLoadDrill1000 is the --clients 1000 drill with short steady phases;
// it runs only with NATSCERT_LOAD=1 (scripts/test.sh's load step).
func TestLoadDrill1000(t *testing.T) {
	if os.Getenv("NATSCERT_LOAD") != "1" {
		t.Skip("set NATSCERT_LOAD=1")
	}
	cfg := smallConfig(t, StrategySwap)
	cfg.Clients, cfg.Servers, cfg.Rate, cfg.RequestRate, cfg.Waves = 1000, 3, 2000, 200, 4
	cfg.Steady, cfg.Pause = 2*time.Second, time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sum strings.Builder
	_ = res.WriteSummary(&sum)
	t.Log("\n" + sum.String())
	if !res.OK() {
		t.Fatalf("drill not OK: %v", res.Report.Broken)
	}
}

// A server counts as renewed only when the proof's probe was shown the
// leaf the rotation minted for it, and that is not the leaf it started with.
func TestServerCertTally(t *testing.T) {
	d := &run{setup: &setup{serverCerts: map[string]string{"n1": "a1", "n2": "a2", "n3": "a3", "n4": "a4"}}}
	proof := func(server, minted, presented string) rotation.ServerProof {
		return rotation.ServerProof{Server: server, ServerCertSHA256: minted, New: rotation.ProbeResult{ServerCertSHA256: presented}}
	}
	got := d.serverCertTally(&rotation.Result{Proof: []rotation.ServerProof{
		proof("n1", "b1", "b1"), // renewed
		proof("n2", "b2", "a2"), // still presents the leaf it started with
		proof("n3", "", "a3"),   // nothing minted
		proof("n4", "a4", "a4"), // "renewed" to the leaf it had
	}})
	if got.Servers != 4 || got.Renewed != 1 || !slices.Equal(got.NotRenewed, []string{"n2", "n3", "n4"}) {
		t.Fatalf("tally %+v", got)
	}
	if s := got.String(); s != "renewed 1/4; old or unexpected fingerprint on n2 n3 n4" {
		t.Errorf("String() = %q", s)
	}
}
