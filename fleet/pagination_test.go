package fleet_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

func loadGate(t testing.TB) {
	if os.Getenv("NATSCERT_LOAD") != "1" {
		t.Skip("load test: set NATSCERT_LOAD=1")
	}
}

// pagination opens n named members spread over a 3-node cluster, then
// looks at them with a small page size, first quietly, then while
// members keep reconnecting (ForceReconnect, often to another server).
// Every look must count each member exactly once, or say Incomplete.
func pagination(t *testing.T, n, pageSize, looks int) {
	f := newFixture(t, 3)
	leaves := make([]*pki.Leaf, 4)
	for i := range leaves {
		leaves[i] = issue(t, f.oldCA, "member-"+strconv.Itoa(i))
	}
	urls := f.c.ClientURLs()
	all := names("m-", n)
	conns := f.dialMany(t, n, func(i int) client {
		return client{url: urls[i%3] + "," + urls[(i+1)%3] + "," + urls[(i+2)%3], leaf: leaves[i%len(leaves)], name: all[i]}
	})
	f.waitConns(t, n)

	var members []fleet.Member
	for _, name := range all {
		members = append(members, fleet.Member{Name: name})
	}
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithPageSize(pageSize),
		fleet.WithExpectMembers(members...), fleet.WithSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	check := func(st *fleet.Status) bool {
		t.Helper()
		if st.Verdict == fleet.Incomplete {
			return false
		}
		if st.Verdict != fleet.Complete {
			t.Fatalf("verdict %s %v", st.Verdict, st.Reasons)
		}
		if st.Counts.Total != n || len(st.Members) != n {
			t.Fatalf("complete view with %d counted connections and %d members, want %d", st.Counts.Total, len(st.Members), n)
		}
		for _, m := range st.Members {
			if m.Connections != 1 {
				t.Fatalf("member %s counted %d times", m.Key, m.Connections)
			}
		}
		return true
	}

	start := time.Now()
	st, err := obs.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !check(st) {
		t.Fatalf("quiet cluster: incomplete: %v", st.Reasons)
	}
	t.Logf("quiet: %d members, page size %d, %d scans in %s", n, pageSize, st.Scans, time.Since(start).Round(time.Millisecond))

	// Churn: one goroutine, owned by this test, stopped by cancel below.
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for churnCtx.Err() == nil {
			// Bursts with quiet gaps, so that some looks can agree.
			for k := 0; k < n/20+1; k++ {
				_ = conns[r.IntN(n)].ForceReconnect()
			}
			select {
			case <-churnCtx.Done():
			case <-time.After(time.Duration(r.IntN(300)) * time.Millisecond):
			}
		}
	}()
	complete, incomplete := 0, 0
	for i := 0; i < looks; i++ {
		st, err := obs.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if check(st) {
			complete++
		} else {
			incomplete++
		}
	}
	stopChurn()
	wg.Wait()
	t.Logf("under churn: %d looks complete and exact, %d incomplete", complete, incomplete)

	// Once the churn stops, every member is back and the view is whole.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := obs.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if check(st) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after churn: still incomplete: %v", st.Reasons)
		}
	}
	for _, nc := range conns {
		if nc.Status() == nats.CLOSED {
			t.Fatal("a member connection closed for good")
		}
	}
}

func TestPaginationSmall(t *testing.T) { pagination(t, 300, 50, 6) }

func TestLoadPagination(t *testing.T) {
	loadGate(t)
	pagination(t, 2600, 100, 8)
}
