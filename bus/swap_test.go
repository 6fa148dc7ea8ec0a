package bus

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natscert/natscert/internal/memsource"
)

type scenario struct {
	servers       int
	dnsOnly       bool
	members       int
	memberServers []int // servers members are given the URLs of
	pubServer     int
	rate, reqRate int
	rounds        int
	spread        time.Duration
	limit         int // swaps dialing at once; 0: an adaptive limiter of its own
	strategy      Strategy
	// balanced puts each member behind a load balancer of its own over
	// the member servers, which gives every dial the next server in turn:
	// the old connection's server cannot be had again.
	balanced bool
}

type outcome struct {
	published          uint64
	lost, dups, reords int64
	reqOK, reqFail     int64
	swaps, cross       uint64
	overlap            uint64
	converge           []time.Duration // per round: new material set to all members on it, old gone
	reports            []SwapReport
	fails              *failures
	tlsNames           map[string]int // names the members verified their servers against, at the end
}

func (o outcome) String() string {
	return fmt.Sprintf("published %d, lost %d, duplicates %d, reordered %d, requests ok %d failed %d, swaps %d (cross-server %d), overlap deliveries %d, convergence %v",
		o.published, o.lost, o.dups, o.reords, o.reqOK, o.reqFail, o.swaps, o.cross, o.overlap, o.converge)
}

// runScenario starts a cluster, members under traffic, rotates their
// material sc.rounds times and counts what was lost, duplicated and
// reordered, and which requests failed.
func runScenario(t *testing.T, sc scenario) outcome {
	f := newFixture(t, sc.servers, sc.dnsOnly)
	if sc.strategy == "" {
		sc.strategy = StrategySwap
	}
	rootsPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	src := memsource.New(f.issue(f.ca, "member"), rootsPEM)
	if len(sc.memberServers) == 0 {
		for i := range f.cluster.Servers {
			sc.memberServers = append(sc.memberServers, i)
		}
	}
	var urls, addrs []string
	for _, i := range sc.memberServers {
		urls = append(urls, f.cluster.Servers[i].ClientURL)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", f.cluster.Servers[i].Port))
	}
	out := outcome{fails: &failures{}, tlsNames: map[string]int{}}
	var rmu sync.Mutex
	var reports []SwapReport
	onSwap := func(r SwapReport) {
		rmu.Lock()
		reports = append(reports, r)
		rmu.Unlock()
	}
	limiter := NewAdaptiveSwapLimiter(DefaultSwapConcurrency, 0)
	if sc.limit > 0 {
		limiter = NewSwapLimiter(sc.limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	members := make([]*member, sc.members)
	balancers := make([]*balancer, sc.members)
	if sc.balanced {
		for i := range balancers {
			balancers[i] = newBalancer(t, addrs, i)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			url := strings.Join(urls, ",")
			if sc.balanced {
				url = balancers[i].url()
			}
			members[i] = startMember(t, ctx, url, fmt.Sprintf("member-%d", i),
				WithSource(src), WithStrategy(sc.strategy), WithSpread(sc.spread), WithSwapLimiter(limiter),
				WithLogger(testLogger(t)), WithBackoff(50*time.Millisecond, 2*time.Second),
				WithSwapHandler(onSwap), WithFailureHandler(out.fails.add))
		}(i)
	}
	wg.Wait()
	defer func() {
		for _, m := range members {
			_ = m.c.Close()
		}
	}()
	pubURL := f.cluster.Servers[sc.pubServer].ClientURL
	pub := plainClient(t, pubURL, f.ca, f.caFile, "publisher")
	defer pub.Close()
	req := plainClient(t, pubURL, f.ca, f.caFile, "requester")
	defer req.Close()
	warmUp(t, pub, members)

	tr := startTraffic(t, pub, req, sc.rate, sc.reqRate)
	time.Sleep(300 * time.Millisecond)
	for r := 0; r < sc.rounds; r++ {
		leaf := f.issue(f.ca, "member")
		want := fp(leaf)
		start := time.Now()
		src.Set(leaf, rootsPEM)
		deadline := time.Now().Add(60 * time.Second)
		for {
			done := 0
			for _, m := range members {
				st := m.c.Status()
				if st.Presented != nil && st.Presented.CertSHA256 == want && (sc.strategy != StrategySwap || st.Swaps >= uint64(r+1)) {
					done++
				}
			}
			if done == len(members) && allPresent(f, members, want) {
				break
			}
			if time.Now().After(deadline) {
				tr.end(t)
				t.Fatalf("round %d: %d of %d members on the new material", r, done, len(members))
			}
			time.Sleep(5 * time.Millisecond)
		}
		out.converge = append(out.converge, time.Since(start).Round(time.Millisecond))
		time.Sleep(200 * time.Millisecond)
	}
	out.published = tr.end(t)
	// Let deliveries finish.
	deadline := time.Now().Add(15 * time.Second)
	for _, m := range members {
		for m.ledger.Count(1, out.published).Lost > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, m := range members {
		tally := m.ledger.Count(1, out.published)
		out.lost += tally.Lost
		out.dups += tally.Duplicates
		out.reords += tally.OutOfOrder
		st := m.c.Status()
		out.swaps += st.Swaps
		out.cross += st.CrossServerSwaps
		out.overlap += st.OverlapDeliveries
		out.tlsNames[st.TLSName]++
	}
	rmu.Lock()
	out.reports = reports[:len(reports):len(reports)]
	rmu.Unlock()
	out.reqOK, out.reqFail = tr.reqOK.Load(), tr.reqFail.Load()
	if e, ok := tr.lastErr.Load().(error); ok {
		t.Logf("last request error: %v", e)
	}
	return out
}

// allPresent says whether the servers list every member exactly once,
// with fingerprint want.
func allPresent(f *fixture, members []*member, want string) bool {
	for _, m := range members {
		p := f.presented(m.c.Name())
		if len(p) != 1 || p[0] != want {
			return false
		}
	}
	return true
}

func TestSwapOneServer(t *testing.T) {
	out := runScenario(t, scenario{servers: 1, members: 4, rate: 300, reqRate: 30, rounds: 3, spread: 100 * time.Millisecond, limit: 2})
	t.Log(out)
	if out.lost != 0 || out.reqFail != 0 || out.swaps != 12 || out.reqOK == 0 {
		t.Fatal(out)
	}
	if out.cross != 0 {
		t.Fatalf("%d cross-server swaps on one server", out.cross)
	}
}

// Members on two servers of three, the publisher and requester on the
// third; server certificates with DNS names only, so the swap's pinned
// dial to the old connection's IP must verify by host name.
func TestSwapCluster(t *testing.T) {
	out := runScenario(t, scenario{servers: 3, dnsOnly: true, members: 4, memberServers: []int{1, 2}, pubServer: 0,
		rate: 300, reqRate: 30, rounds: 3, spread: 100 * time.Millisecond, limit: 2})
	t.Log(out)
	if out.lost != 0 || out.reqFail != 0 || out.swaps != 12 || out.reqOK == 0 {
		t.Fatal(out)
	}
	if out.cross != 0 {
		t.Fatalf("%d cross-server swaps with every server up", out.cross)
	}
}

// 500 members, 3 servers, fan-out at 1,000 msg/s and 100 requests/s.
func TestLoadSwap(t *testing.T) {
	if os.Getenv("NATSCERT_LOAD") != "1" {
		t.Skip("NATSCERT_LOAD=1 runs load tests")
	}
	out := runScenario(t, scenario{servers: 3, members: 500, memberServers: []int{0, 1, 2}, pubServer: 0,
		rate: 1000, reqRate: 100, rounds: 2, spread: time.Second})
	t.Log(out)
	if out.lost != 0 || out.reqFail != 0 || out.swaps != 1000 {
		t.Fatal(out)
	}
}

// Each member reaches the cluster through a load balancer that gives
// every dial the next server: a swap cannot get the old connection's
// server back and must take the cross-server path, with its longer grace,
// while fan-out messages and requests flow. The servers' certificates
// carry the DNS name localhost only, the name of the balancer's URL: the
// swap dials the balancer by IP and must still verify against it.
func TestSwapCrossServer(t *testing.T) {
	out := runScenario(t, scenario{servers: 3, dnsOnly: true, balanced: true, members: 6, pubServer: 0,
		rate: 300, reqRate: 30, rounds: 2, spread: 100 * time.Millisecond, limit: 2})
	t.Log(out)
	if out.lost != 0 || out.reqFail != 0 || out.swaps != 12 || out.reqOK == 0 {
		t.Fatal(out)
	}
	if out.cross != out.swaps {
		t.Fatalf("%d of %d swaps counted cross-server", out.cross, out.swaps)
	}
	if len(out.reports) != 12 {
		t.Fatalf("%d swap reports, want 12", len(out.reports))
	}
	for _, r := range out.reports {
		if r.Err != nil || !r.CrossServer || r.FromServerID == r.ToServerID || r.Grace != DefaultCrossServerGrace {
			t.Fatalf("report: err %v, cross-server %v, from %s to %s, grace %s (want %s)",
				r.Err, r.CrossServer, r.FromServerID, r.ToServerID, r.Grace, DefaultCrossServerGrace)
		}
		if overlap := r.Switched.Sub(r.Subscribed); overlap < DefaultCrossServerGrace {
			t.Fatalf("overlap %s, shorter than the cross-server grace", overlap)
		}
	}
	if n := out.fails.count(func(f Failure) bool { return f.Reason == ReasonServerCertificate }); n != 0 {
		t.Fatalf("%d server certificate failures:%s", n, out.fails.String())
	}
	if out.tlsNames["localhost"] != 6 {
		t.Fatalf("servers verified against %v, want localhost for all 6", out.tlsNames)
	}
}

// The cross-server path at scale: 300 members each behind its own
// round-robin balancer, fan-out and requests flowing.
func TestLoadSwapCrossServer(t *testing.T) {
	if os.Getenv("NATSCERT_LOAD") != "1" {
		t.Skip("NATSCERT_LOAD=1 runs load tests")
	}
	out := runScenario(t, scenario{servers: 3, dnsOnly: true, balanced: true, members: 300, pubServer: 0,
		rate: 1000, reqRate: 100, rounds: 2, spread: time.Second})
	t.Log(out)
	if out.lost != 0 || out.reqFail != 0 || out.swaps != 600 || out.cross != 600 {
		t.Fatal(out)
	}
}
