package drill

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
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
		Dir: t.TempDir(), Progress: d.Event,
	}
}

func TestDrillSwapLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, smallConfig(t, StrategySwap))
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
}

// Restart and reconnect promise less than swap: the rotation completes
// and the proof passes; what they lose is measured and reported.
func TestDrillRestartAndReconnect(t *testing.T) {
	for _, s := range []Strategy{StrategyRestart, StrategyReconnect} {
		t.Run(string(s), func(t *testing.T) {
			// No deadline on purpose: the CLI's context has none.
			res, err := Run(context.Background(), smallConfig(t, s))
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

// Members as examples/worker processes: the drill builds the worker,
// starts one process per member and counts what each reports at exit.
func TestDrillProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs worker processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := smallConfig(t, StrategySwap)
	cfg.Clients, cfg.Servers, cfg.Waves, cfg.Processes = 4, 1, 2, true
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
	if res.Messages.Expected == 0 || res.Requests.Answered == 0 {
		t.Fatalf("no traffic measured: %+v %+v", res.Messages, res.Requests)
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
