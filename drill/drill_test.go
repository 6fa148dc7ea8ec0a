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
	_ = os.Stdout
}
