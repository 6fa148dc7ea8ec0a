package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/bus"
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
	src := newSwitchable(f.leaf(b, "bench-bus"), f.roots)
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
	const scale = 20
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
		src := newSwitchable(f.leaf(t, "rate-bus"), f.roots)
		c, err := bus.Connect(context.Background(), urls, bus.WithSource(src), bus.WithName("rate-bus"),
			bus.WithLogger(quiet()), bus.WithBackoff(bus.DefaultBackoffMin/scale, bus.DefaultBackoffMax/scale))
		if err != nil {
			t.Fatal(err)
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
		b0, s0 := c.Status().FailedAttempts, dials.Load()
		time.Sleep(4 * minute)
		bn, sn := float64(c.Status().FailedAttempts-b0)/4, float64(dials.Load()-s0)/4
		t.Logf("servers=%d  failed handshakes per client per minute after the first: bus %.1f, nats.go today %.1f (bus failures by reason %v)",
			servers, bn, sn, c.Status().Failures)
		if bn > 4 {
			t.Errorf("bus: %.1f failed handshakes a minute, want <= 4", bn)
		}
		_ = c.Close()
		static.Close()
		f.cluster.Close()
	}
}

type dialCounter struct{ n *atomic.Int64 }

func (d dialCounter) Dial(network, addr string) (netConn, error) {
	d.n.Add(1)
	return dialer.Dial(network, addr)
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
	ca := f.ca
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
		ca = next
	}
	_ = ca
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
// closed), as a multiple of the handshake floor measured in the same run
// under the same traffic (N plain mTLS connects, 8 at a time); swap against reconnect, with fan-out at 200 msg/s to every client
// counting loss, duplicates and reordering.
func TestLoadConvergence(t *testing.T) {
	loadOnly(t)
	sizes := []int{100, 500, 1000}
	if s := os.Getenv("NATSCERT_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, x := range splitInts(s) {
			sizes = append(sizes, x)
		}
	}
	for _, n := range sizes {
		f := newFixture(t, 1)
		url := f.cluster.Servers[0].ClientURL
		idle := floor(t, f, url, n)
		strategies := []bus.Strategy{bus.StrategySwap, bus.StrategyReconnect}
		if os.Getenv("NATSCERT_BENCH_STRATEGIES") == "swap" {
			strategies = strategies[:1]
		}
		for _, st := range strategies {
			r := converge(t, f, url, n, st)
			fl := r.floor
			t.Logf("N=%4d %-9s converged in %6s = %.2fx floor under load (%s; idle floor %s, %.2fx)  lost/client %.1f  duplicates/client %.1f  reordered/client %.2f  failed attempts %d",
				n, st, r.took.Round(time.Millisecond), r.took.Seconds()/fl.Seconds(), fl.Round(time.Millisecond),
				idle.Round(time.Millisecond), r.took.Seconds()/idle.Seconds(),
				float64(r.lost)/float64(n), float64(r.dups)/float64(n), float64(r.reorders)/float64(n), r.failed)
		}
		f.cluster.Close()
	}
}

type convergence struct {
	floor                time.Duration
	took                 time.Duration
	lost, dups, reorders int
	failed               uint64
}

func converge(t *testing.T, f *fixture, url string, n int, strategy bus.Strategy) convergence {
	src := newSwitchable(f.leaf(t, "conv"), f.roots)
	clients := make([]*bus.Conn, n)
	ledgers := make([]*ledger, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	limiter := bus.NewSwapLimiter(bus.DefaultSwapConcurrency)
	if ls := splitInts(os.Getenv("NATSCERT_BENCH_LIMIT")); len(ls) == 1 {
		limiter = bus.NewSwapLimiter(ls[0])
	}
	var pmu sync.Mutex
	var wait, dial, sub, overlap, retire time.Duration
	var nrep int
	onSwap := func(r bus.SwapReport) {
		if r.Err != nil {
			return
		}
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
		if nrep > 0 {
			t.Logf("  swap phases, mean of %d: limiter %s, dial %s, subscribe+flush %s, grace+switch %s, drain %s", nrep,
				(wait / time.Duration(nrep)).Round(time.Millisecond), (dial / time.Duration(nrep)).Round(time.Millisecond),
				(sub / time.Duration(nrep)).Round(time.Millisecond), (overlap / time.Duration(nrep)).Round(time.Millisecond),
				(retire / time.Duration(nrep)).Round(time.Millisecond))
		}
	}()
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := bus.Connect(context.Background(), url, bus.WithSource(src), bus.WithStrategy(strategy), bus.WithSpread(0),
				bus.WithName(fmt.Sprintf("conv-%s-%d", strategy, i)), bus.WithLogger(quiet()), bus.WithSwapHandler(onSwap), bus.WithSwapLimiter(limiter))
			if err != nil {
				t.Error(err)
				return
			}
			l := &ledger{}
			if _, err := c.Subscribe("fan", l.onMsg); err != nil {
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
			l.mu.Lock()
			m := l.max
			l.mu.Unlock()
			if m == 0 {
				return false
			}
		}
		return true
	})
	from := seq.Load() + 1
	// The floor under this run's own load: n handshakes with the fan-out
	// flowing to every client.
	fl := floor(t, f, url, n)
	time.Sleep(200 * time.Millisecond)

	leaf := f.leaf(t, "conv")
	want := pki.CertSHA256(leaf.Cert)
	start := time.Now()
	src.set(leaf, f.roots)
	waitUntil(t, 120*time.Second, func() bool {
		for _, c := range clients {
			st := c.Status()
			if !st.Connected || st.Presented == nil || st.Presented.CertSHA256 != want || (strategy == bus.StrategySwap && st.Swaps == 0) {
				return false
			}
		}
		return true
	})
	r := convergence{floor: fl}
	r.took = time.Since(start)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	_ = pub.Flush()
	to := seq.Load()
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range ledgers {
		for l.missing(from, to) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i, l := range ledgers {
		r.lost += l.missing(from, to)
		l.mu.Lock()
		r.dups += l.dups
		r.reorders += l.reorders
		l.mu.Unlock()
		r.failed += clients[i].Status().FailedAttempts
	}
	return r
}
