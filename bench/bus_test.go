package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/bus"
	"github.com/natscert/natscert/internal/memsource"
	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

func loadOnly(t *testing.T) {
	if os.Getenv("NATSCERT_LOAD") != "1" {
		t.Skip("NATSCERT_LOAD=1 runs load tests and measurements")
	}
}

// BenchmarkPublish publishes 128-byte messages through plain nats.go and
// through bus, on one mTLS connection each, side by side.
func BenchmarkPublish(b *testing.B) {
	f := newFixture(b, 1)
	url := f.cluster.Servers[0].ClientURL
	payload := make([]byte, 128)
	run := func(b *testing.B, publish func() error, flush func() error) {
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := publish(); err != nil {
				b.Fatal(err)
			}
		}
		if err := flush(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	nc := f.plain(b, url, "bench-plain")
	defer nc.Close()
	src := memsource.New(f.leaf(b, "bench-bus"), f.roots)
	c, err := bus.Connect(context.Background(), url, bus.WithSource(src), bus.WithName("bench-bus"), bus.WithLogger(quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("nats", func(b *testing.B) {
		run(b, func() error { return nc.Publish("bench", payload) }, nc.Flush)
	})
	b.Run("bus", func(b *testing.B) {
		run(b, func() error { return c.Publish("bench", payload) }, c.Flush)
	})
}

// TestLoadFailedHandshakeRate counts failed handshakes a minute of a
// client whose certificate the servers reject, after the first minute,
// every server tried counted, bus against today's nats.go settings. The
// clock is scaled down 20 times alike for both (bus backoff 25 ms..2 s for
// 500 ms..40 s; nats.go ReconnectWait 100 ms + TLS jitter up to 50 ms for
// 2 s + 1 s): one scaled minute lasts 3 s.
func TestLoadFailedHandshakeRate(t *testing.T) {
	loadOnly(t)
	const scale, clients = 20, 16
	minute := time.Minute / scale
	for _, servers := range []int{1, 3} {
		f := newFixture(t, servers)
		urls := ""
		for i, u := range f.cluster.ClientURLs() {
			if i > 0 {
				urls += ","
			}
			urls += u
		}
		// Several bus clients: the wait before each attempt is random, so
		// one client over four minutes is too few attempts to judge a rate.
		var cs []*bus.Conn
		for i := range clients {
			name := fmt.Sprintf("rate-bus-%d", i)
			c, err := bus.Connect(context.Background(), urls, bus.WithSource(memsource.New(f.leaf(t, name), f.roots)),
				bus.WithName(name), bus.WithLogger(quiet()), bus.WithBackoff(bus.DefaultBackoffMin/scale, bus.DefaultBackoffMax/scale))
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		failed := func() (n uint64) {
			for _, c := range cs {
				n += c.Status().FailedAttempts
			}
			return n
		}
		var dials atomic.Int64
		static := f.plain(t, urls, "rate-static", nats.SetCustomDialer(dialCounter{&dials}),
			nats.ReconnectWait(2*time.Second/scale), nats.ReconnectJitter(0, time.Second/scale))
		next, err := pki.NewCA("bench clients 2")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range f.cluster.Servers {
			if err := s.SetClientCA(next.CertPEM); err != nil {
				t.Fatal(err)
			}
			kickAll(s)
		}
		time.Sleep(minute)
		b0, s0 := failed(), dials.Load()
		time.Sleep(4 * minute)
		bn, sn := float64(failed()-b0)/4/clients, float64(dials.Load()-s0)/4
		t.Logf("servers=%d  failed handshakes per client per minute after the first: bus %.1f (mean of %d clients), nats.go today %.1f (bus failures by reason, first client: %v)",
			servers, bn, clients, sn, cs[0].Status().Failures)
		if bn > 4 {
			t.Errorf("bus: %.1f failed handshakes a minute, want <= 4", bn)
		}
		for _, c := range cs {
			_ = c.Close()
		}
		static.Close()
		f.cluster.Close()
	}
}

// dialCounter counts a plain nats.go client's dials.
type dialCounter struct{ n *atomic.Int64 }

func (d dialCounter) Dial(network, addr string) (net.Conn, error) {
	d.n.Add(1)
	return net.DialTimeout(network, addr, 2*time.Second)
}

// TestLoadFilesToReconnected times, for a client the servers reject,
// good files landing (a FileSource over real files, default debounce) to
// the client connected again presenting them.
func TestLoadFilesToReconnected(t *testing.T) {
	loadOnly(t)
	f := newFixture(t, 1)
	dir := filepath.Join(f.dir, "client")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := f.leaf(t, "files").WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	src, err := material.NewFileSource(context.Background(), material.Files{Cert: certFile, Key: keyFile, Roots: f.cluster.ServerCAFile()},
		material.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c, err := bus.Connect(context.Background(), f.cluster.Servers[0].ClientURL, bus.WithSource(src), bus.WithName("files"), bus.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var times []time.Duration
	for i := 0; i < 10; i++ {
		next, err := pki.NewCA(fmt.Sprintf("bench clients %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.cluster.Servers[0].SetClientCA(next.CertPEM); err != nil {
			t.Fatal(err)
		}
		before := c.Status().FailedAttempts
		kickAll(f.cluster.Servers[0])
		waitUntil(t, 30*time.Second, func() bool { return c.Status().FailedAttempts >= before+2 })
		leaf, err := next.Issue("files", pki.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		want := pki.CertSHA256(leaf.Cert)
		start := time.Now()
		if err := leaf.WriteFiles(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, func() bool {
			st := c.Status()
			return st.Connected && st.Presented != nil && st.Presented.CertSHA256 == want
		})
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var sum time.Duration
	for _, d := range times {
		sum += d
	}
	t.Logf("good files landing to reconnected, %d runs: median %s, mean %s, max %s",
		len(times), times[len(times)/2].Round(time.Millisecond), (sum / time.Duration(len(times))).Round(time.Millisecond),
		times[len(times)-1].Round(time.Millisecond))
	if times[len(times)-1] >= time.Second {
		t.Errorf("max %s, want < 1s", times[len(times)-1])
	}
}

// TestLoadConvergence rotates N clients' material at once and times until
// every client presents the new certificate (for swap: old connection
// closed), as a multiple of the handshake floor: N plain mTLS connects,
// the best of 16, 64 and 256 dialers at once, measured idle and again
// under the run's own fan-out (200 msg/s to every client) just before the
// rotation. Swap (with each limiter of NATSCERT_BENCH_LIMIT, a comma list
// of window sizes and "adaptive"; default adaptive) against reconnect,
// counting loss, duplicates and reordering.
func TestLoadConvergence(t *testing.T) {
	loadOnly(t)
	sizes := []int{100, 500, 1000}
	if s := os.Getenv("NATSCERT_BENCH_SIZES"); s != "" {
		sizes = splitInts(s)
	}
	limiters := []string{"adaptive"}
	if s := os.Getenv("NATSCERT_BENCH_LIMIT"); s != "" {
		limiters = strings.Split(s, ",")
	}
	type run struct {
		strategy bus.Strategy
		limiter  string
	}
	var runs []run
	for _, l := range limiters {
		runs = append(runs, run{bus.StrategySwap, strings.TrimSpace(l)})
	}
	if os.Getenv("NATSCERT_BENCH_STRATEGIES") != "swap" {
		runs = append(runs, run{strategy: bus.StrategyReconnect})
	}
	for _, n := range sizes {
		f := newFixture(t, 1)
		url := f.cluster.Servers[0].ClientURL
		idle := bestFloor(t, f, url, n, "idle")
		for _, r := range runs {
			var limiter *bus.SwapLimiter
			switch w := splitInts(r.limiter); {
			case r.strategy != bus.StrategySwap:
			case len(w) == 1:
				limiter = bus.NewSwapLimiter(w[0])
			default:
				limiter = bus.NewAdaptiveSwapLimiter(bus.DefaultSwapConcurrency, 0)
			}
			c := converge(t, f, url, n, r.strategy, limiter)
			name := string(r.strategy)
			if limiter != nil {
				name += fmt.Sprintf(" limiter %s (peak window %d)", r.limiter, c.peakWindow)
			}
			t.Logf("N=%4d %s converged in %s = %.2fx loaded floor (%s), %.2fx idle floor (%s)  lost/client %.1f  duplicates/client %.1f  reordered/client %.2f  failed attempts %d",
				n, name, c.took.Round(time.Millisecond), c.took.Seconds()/c.floor.Seconds(), c.floor.Round(time.Millisecond),
				c.took.Seconds()/idle.Seconds(), idle.Round(time.Millisecond),
				float64(c.lost)/float64(n), float64(c.dups)/float64(n), float64(c.reorders)/float64(n), c.failed)
		}
		f.cluster.Close()
	}
}

// bestFloor is the least time n handshakes took with 16, 64 or 256
// dialers at once: on an idle server the number hardly matters, on a
// server busy delivering messages each handshake gets a share of the
// CPU and more at once go faster.
func bestFloor(t *testing.T, f *fixture, url string, n int, what string) time.Duration {
	best := time.Duration(0)
	line := ""
	for _, conc := range []int{16, 64, 256} {
		d := floor(t, f, url, n, conc)
		line += fmt.Sprintf(" %d dialers %s,", conc, d.Round(time.Millisecond))
		if best == 0 || d < best {
			best = d
		}
	}
	t.Logf("N=%4d %s floor:%s best %s", n, what, strings.TrimSuffix(line, ","), best.Round(time.Millisecond))
	return best
}

type convergence struct {
	floor                time.Duration
	took                 time.Duration
	lost, dups, reorders int64
	failed               uint64
	peakWindow           int
}

func converge(t *testing.T, f *fixture, url string, n int, strategy bus.Strategy, limiter *bus.SwapLimiter) convergence {
	src := memsource.New(f.leaf(t, "conv"), f.roots)
	clients := make([]*bus.Conn, n)
	ledgers := make([]*seqledger.Ledger, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var pmu sync.Mutex
	var wait, dial, sub, overlap, retire time.Duration
	var nrep int
	var swapped atomic.Int64
	onSwap := func(r bus.SwapReport) {
		if r.Err != nil {
			return
		}
		swapped.Add(1)
		pmu.Lock()
		defer pmu.Unlock()
		nrep++
		wait += r.Acquired.Sub(r.Start)
		dial += r.Dialed.Sub(r.Acquired)
		sub += r.Subscribed.Sub(r.Dialed)
		overlap += r.Switched.Sub(r.Subscribed)
		retire += r.End.Sub(r.Switched)
	}
	defer func() {
		pmu.Lock()
		defer pmu.Unlock()
		if nrep > 0 {
			t.Logf("  swap phases, mean of %d: limiter %s, dial %s, subscribe+flush %s, grace+unsubscribe+flush %s, drain %s", nrep,
				(wait / time.Duration(nrep)).Round(time.Millisecond), (dial / time.Duration(nrep)).Round(time.Millisecond),
				(sub / time.Duration(nrep)).Round(time.Millisecond), (overlap / time.Duration(nrep)).Round(time.Millisecond),
				(retire / time.Duration(nrep)).Round(time.Millisecond))
		}
	}()
	opts := []bus.Option{bus.WithSource(src), bus.WithStrategy(strategy), bus.WithSpread(0), bus.WithLogger(quiet()), bus.WithSwapHandler(onSwap)}
	if limiter != nil {
		opts = append(opts, bus.WithSwapLimiter(limiter))
	}
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := bus.Connect(context.Background(), url, append(opts, bus.WithName(fmt.Sprintf("conv-%s-%d", strategy, i)))...)
			if err != nil {
				t.Error(err)
				return
			}
			l := &seqledger.Ledger{}
			if _, err := c.Subscribe("fan", func(m *nats.Msg) {
				if seq, ok := seqledger.Decode(m.Data); ok {
					l.Record(seq)
				}
			}); err != nil {
				t.Error(err)
			}
			_ = c.Flush()
			clients[i], ledgers[i] = c, l
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	pub := f.plain(t, url, "conv-publisher")
	defer pub.Close()
	var seq atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); publisher(pub, 200, &seq, stop) }()
	waitUntil(t, 30*time.Second, func() bool {
		for _, l := range ledgers {
			if l.Max() == 0 {
				return false
			}
		}
		return true
	})
	from := seq.Load() + 1
	// The floor under this run's own load: n handshakes with the fan-out
	// flowing to every client.
	r := convergence{floor: bestFloor(t, f, url, n, "loaded")}
	time.Sleep(200 * time.Millisecond)

	leaf := f.leaf(t, "conv")
	want := pki.CertSHA256(leaf.Cert)
	start := time.Now()
	src.Set(leaf, f.roots)
	// A swap is done when its handler is called; waiting for the count
	// rather than reading every client's status keeps the measurement's
	// own cost out of the run. Reconnect has no such signal.
	converged := func() bool {
		for _, c := range clients {
			st := c.Status()
			if !st.Connected || st.Presented == nil || st.Presented.CertSHA256 != want {
				return false
			}
		}
		return true
	}
	if strategy == bus.StrategySwap {
		waitUntil(t, 120*time.Second, func() bool {
			if limiter != nil {
				r.peakWindow = max(r.peakWindow, limiter.Window())
			}
			return swapped.Load() >= int64(n)
		})
	} else {
		waitUntil(t, 120*time.Second, converged)
	}
	r.took = time.Since(start)
	if !converged() {
		t.Fatal("every client swapped, yet not every one presents the new certificate")
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	_ = pub.Flush()
	to := seq.Load()
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range ledgers {
		for l.Count(from, to).Lost > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i, l := range ledgers {
		tally := l.Count(from, to)
		r.lost += tally.Lost
		r.dups += tally.Duplicates
		r.reorders += tally.OutOfOrder
		r.failed += clients[i].Status().FailedAttempts
	}
	return r
}
