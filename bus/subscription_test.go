package bus

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natscert/natscert/internal/memsource"
)

// Subscriptions move with a swap; Unsubscribe after a swap stops every
// delivery; the metrics collector reports the swap.
func TestSubscriptionAcrossSwap(t *testing.T) {
	f := newFixture(t, 1, false)
	rootsPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	src := memsource.New(f.issue(f.ca, "member"), rootsPEM)
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	var swaps atomic.Int64
	c := connectTest(t, f, "member", WithSource(src), WithStrategy(StrategySwap), WithSpread(0), WithMetrics(m),
		WithSwapHandler(func(r SwapReport) {
			if r.Err == nil {
				swaps.Add(1)
			}
		}))
	var got atomic.Int64
	sub, err := c.Subscribe("s", func(*nats.Msg) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	first := c.Current()
	leaf := f.issue(f.ca, "member")
	src.Set(leaf, rootsPEM)
	waitFor(t, 10*time.Second, "swap", func() bool { return swaps.Load() == 1 })
	if c.Current() == first || !first.IsClosed() {
		t.Fatal("swap kept the old connection")
	}
	if p := f.presented("member"); len(p) != 1 || p[0] != fp(leaf) {
		t.Fatalf("connz %v", p)
	}
	// Made before the swap, the subscription gets messages on the new
	// connection.
	pub := plainClient(t, f.cluster.Servers[0].ClientURL, f.ca, f.caFile, "pub")
	defer pub.Close()
	_ = pub.Publish("s", nil)
	_ = pub.Flush()
	waitFor(t, 5*time.Second, "delivery after swap", func() bool { return got.Load() == 1 })
	// A sentinel on a second subject, published after, arrives after
	// anything the first would have delivered.
	sentinel := make(chan struct{})
	if _, err := c.Subscribe("sentinel", func(*nats.Msg) { close(sentinel) }); err != nil {
		t.Fatal(err)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = pub.Publish("s", nil)
	_ = pub.Publish("sentinel", nil)
	_ = pub.Flush()
	select {
	case <-sentinel:
	case <-time.After(5 * time.Second):
		t.Fatal("no sentinel")
	}
	if got.Load() != 1 {
		t.Fatalf("%d deliveries after Unsubscribe", got.Load()-1)
	}
	if v := gathered(t, reg, "natscert_bus_swaps_total", "same_server"); v != 1 {
		t.Fatalf("same_server swaps metric %v, want 1", v)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Fatalf("after Close: %d families, %v", len(mfs), err)
	}
}

// gathered returns the value of the series of family name with a label
// value label.
func gathered(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// A third certificate loaded while a swap to the second is still under
// way (its old connection kept open by a handler that has not returned)
// is not lost: a second swap follows once the first is over.
func TestMaterialDuringSwap(t *testing.T) {
	f := newFixture(t, 1, false)
	rootsPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	src := memsource.New(f.issue(f.ca, "member"), rootsPEM)
	c := connectTest(t, f, "member", WithSource(src), WithStrategy(StrategySwap), WithSpread(0))
	entered, release := make(chan struct{}), make(chan struct{})
	if _, err := c.Subscribe("block", func(*nats.Msg) {
		close(entered)
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("block", nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	second := f.issue(f.ca, "member")
	src.Set(second, rootsPEM)
	// Switched to the second certificate; retiring the old connection
	// waits for the handler.
	waitFor(t, 10*time.Second, "switch to the second certificate", func() bool {
		st := c.Status()
		return st.Presented != nil && st.Presented.CertSHA256 == fp(second)
	})
	third := f.issue(f.ca, "member")
	src.Set(third, rootsPEM)
	close(release)
	waitFor(t, 10*time.Second, "third certificate in connz", func() bool {
		p := f.presented("member")
		return len(p) == 1 && p[0] == fp(third)
	})
	waitFor(t, 10*time.Second, "second swap counted", func() bool { return c.Status().Swaps == 2 })
}
