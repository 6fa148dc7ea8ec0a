package fleet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// mixed is a 3-node cluster with clients split across servers: three
// named members on old leaves, three on new, one on a leaf nobody
// declared, and two unnamed legacy replicas sharing one old leaf.
type mixed struct {
	*fixture
	oldLeaves, newLeaves []*pki.Leaf
	legacy, unknown      *pki.Leaf
	oldM, newM           *fleet.Material
}

func newMixed(t *testing.T) *mixed {
	m := &mixed{fixture: newFixture(t, 3)}
	for i, name := range names("svc-", 3) {
		m.oldLeaves = append(m.oldLeaves, issue(t, m.oldCA, name))
		m.newLeaves = append(m.newLeaves, issue(t, m.newCA, name))
		m.mustDial(t, m.c.Servers[i].ClientURL, m.oldLeaves[i], "old-"+name)
		m.mustDial(t, m.c.Servers[(i+1)%3].ClientURL, m.newLeaves[i], "new-"+name)
	}
	m.unknown = issue(t, m.other, "stranger")
	m.mustDial(t, m.c.Servers[2].ClientURL, m.unknown, "stranger")
	m.legacy = issue(t, m.oldCA, "legacy")
	m.mustDial(t, m.c.Servers[0].ClientURL, m.legacy, "")
	m.mustDial(t, m.c.Servers[1].ClientURL, m.legacy, "")
	m.waitConns(t, 9)

	m.oldM = fleet.NewMaterial(m.legacy.Cert)
	m.newM = fleet.NewMaterial()
	for i := range m.oldLeaves {
		m.oldM.Add(m.oldLeaves[i].Cert)
		m.newM.Add(m.newLeaves[i].Cert)
	}
	return m
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestMixedClusterHTTPAndSystem(t *testing.T) {
	m := newMixed(t)
	sys := m.system(t, 1)
	sources := map[string]fleet.Source{
		"http":   fleet.Monitor(m.c.MonitorURLs()...),
		"system": fleet.System(sys),
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			obs, err := fleet.New(src, fleet.WithOld(m.oldM), fleet.WithNew(m.newM),
				fleet.WithExpectServers(3), fleet.WithSettle(0), fleet.WithPageSize(2))
			if err != nil {
				t.Fatal(err)
			}
			st, err := obs.Poll(ctxT(t, 30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			want := fleet.Counts{Total: 9, New: 3, Old: 5, Unknown: 1}
			if st.Counts != want {
				t.Fatalf("counts %+v, want %+v; reasons %v", st.Counts, want, st.Reasons)
			}
			if st.Verdict != fleet.NotConverged || !errors.Is(st.Err(), fleet.ErrNotConverged) {
				t.Fatalf("verdict %s (%v), want not-converged", st.Verdict, st.Err())
			}
			if len(st.Servers) != 3 {
				t.Fatalf("%d servers", len(st.Servers))
			}
			perServer := map[string]fleet.Counts{}
			sysConns := 0
			for _, s := range st.Servers {
				if !s.Answered || s.Name == "" || s.ConfigLoadTime.IsZero() || s.TLSCertNotAfter.IsZero() || s.Version == "" {
					t.Fatalf("server %+v: identity or varz fields missing", s)
				}
				perServer[s.Name] = s.Counts
				sysConns += s.System
			}
			// n1: old-svc-0, new-svc-2, legacy; n2: old-svc-1, new-svc-0,
			// legacy; n3: old-svc-2, new-svc-1, stranger.
			wantPer := map[string]fleet.Counts{
				"n1": {Total: 3, New: 1, Old: 2},
				"n2": {Total: 3, New: 1, Old: 2},
				"n3": {Total: 3, New: 1, Old: 1, Unknown: 1},
			}
			for n, w := range wantPer {
				if perServer[n] != w {
					t.Errorf("server %s counts %+v, want %+v", n, perServer[n], w)
				}
			}
			if name == "system" && sysConns != 1 {
				t.Errorf("system connections listed %d, want 1 (the collector's own)", sysConns)
			}
			// Stragglers are by member: three named, one legacy leaf group.
			if len(st.Stragglers) != 4 {
				t.Errorf("stragglers %v, want 4 members", st.Stragglers)
			}
			if c := st.ByAccount["APP"]; c.Total != 9 {
				t.Errorf("account APP counts %+v", c)
			}
		})
	}
}

func TestConvergesAfterMembersMove(t *testing.T) {
	f := newFixture(t, 3)
	oldLeaf, newLeaf := issue(t, f.oldCA, "orders"), issue(t, f.newCA, "orders")
	members := []fleet.Member{{Name: "orders-0"}, {Name: "orders-1"}, {Name: "orders-2"},
		{Fingerprints: []string{pki.CertSHA256(oldLeaf.Cert), pki.CertSHA256(newLeaf.Cert)}, Count: 2}}
	var conns []interface{ Close() }
	for i := 0; i < 3; i++ {
		conns = append(conns, f.mustDial(t, f.c.Servers[i].ClientURL, oldLeaf, names("orders-", 3)[i]))
	}
	conns = append(conns, f.mustDial(t, f.c.Servers[0].ClientURL, oldLeaf, ""), f.mustDial(t, f.c.Servers[2].ClientURL, oldLeaf, ""))
	f.waitConns(t, 5)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...),
		fleet.WithOld(fleet.NewMaterial(oldLeaf.Cert)), fleet.WithNew(fleet.NewMaterial(newLeaf.Cert)),
		fleet.WithExpectMembers(members...), fleet.WithSettle(300*time.Millisecond),
		fleet.WithInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Check(ctxT(t, 30*time.Second))
	if err != nil || st.Verdict != fleet.NotConverged {
		t.Fatalf("before: %v %s %v", err, st.Verdict, st.Reasons)
	}
	// Move everyone: new processes on new leaves, on other servers.
	for _, c := range conns {
		c.Close()
	}
	for i := 0; i < 3; i++ {
		f.mustDial(t, f.c.Servers[(i+1)%3].ClientURL, newLeaf, names("orders-", 3)[i])
	}
	f.mustDial(t, f.c.Servers[1].ClientURL, newLeaf, "")
	f.mustDial(t, f.c.Servers[1].ClientURL, newLeaf, "")

	polls := 0
	st, err = obs.Wait(ctxT(t, 30*time.Second), func(*fleet.Status) { polls++ })
	if err != nil {
		t.Fatalf("wait: %v (%v)", err, st.Reasons)
	}
	if st.Verdict != fleet.Converged || !st.Settled || st.Counts != (fleet.Counts{Total: 5, New: 5}) {
		t.Fatalf("after: %s settled=%v %+v %v", st.Verdict, st.Settled, st.Counts, st.Reasons)
	}
	if polls < 1 {
		t.Fatal("progress never called")
	}
	// Check on a settled view converges too.
	if st, err := obs.Check(ctxT(t, 30*time.Second)); err != nil || st.Verdict != fleet.Converged {
		t.Fatalf("check after: %v %s %v", err, st.Verdict, st.Reasons)
	}
}

func TestReconnectedMemberCountsOnceNewestWins(t *testing.T) {
	f := newFixture(t, 2)
	oldLeaf, newLeaf := issue(t, f.oldCA, "a"), issue(t, f.newCA, "a")
	oldConn := f.mustDial(t, f.c.Servers[0].ClientURL, oldLeaf, "a")
	f.waitConns(t, 1)
	time.Sleep(5 * time.Millisecond) // distinct start times; connz has ns resolution
	f.mustDial(t, f.c.Servers[1].ClientURL, newLeaf, "a")
	f.waitConns(t, 2)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithSettle(0),
		fleet.WithOld(fleet.NewMaterial(oldLeaf.Cert)), fleet.WithNew(fleet.NewMaterial(newLeaf.Cert)),
		fleet.WithExpectMembers(fleet.Member{Name: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Poll(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts != (fleet.Counts{Total: 1, New: 1}) || len(st.Members) != 1 {
		t.Fatalf("counts %+v members %+v", st.Counts, st.Members)
	}
	sup := 0
	for _, c := range st.Connections {
		if c.Superseded {
			sup++
			if c.Class != fleet.ClassOld {
				t.Errorf("superseded connection is %s, want the old one", c.Class)
			}
		}
	}
	// The superseded connection still presents old material: not
	// converged until it is gone (a swap's drain, a duplicate process).
	if sup != 1 || st.Verdict != fleet.NotConverged || len(st.Stragglers) != 1 {
		t.Fatalf("superseded %d, verdict %s %v, stragglers %v", sup, st.Verdict, st.Reasons, st.Stragglers)
	}
	oldConn.Close()
	if st, err := obs.Wait(ctxT(t, 30*time.Second), nil); err != nil || st.Counts != (fleet.Counts{Total: 1, New: 1}) {
		t.Fatalf("after the old connection closed: %v %+v", err, st)
	}
}

func TestMissingMemberIsIncomplete(t *testing.T) {
	m := newMixed(t)
	obs, err := fleet.New(fleet.Monitor(m.c.MonitorURLs()...), fleet.WithSettle(0),
		fleet.WithOld(m.oldM), fleet.WithNew(m.newM),
		fleet.WithExpectMembers(fleet.Member{Name: "new-svc-0"}, fleet.Member{Name: "ghost"}),
		fleet.WithExpectedOnly())
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Poll(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Verdict != fleet.Incomplete || !errors.Is(st.Err(), fleet.ErrIncomplete) {
		t.Fatalf("verdict %s, want incomplete", st.Verdict)
	}
	if len(st.MissingMembers) != 1 || st.MissingMembers[0] != "ghost" {
		t.Fatalf("missing members %v", st.MissingMembers)
	}
	// Without the ghost, the wave of new-svc-0 alone has converged even
	// though others are still old (WithExpectedOnly).
	obs, _ = fleet.New(fleet.Monitor(m.c.MonitorURLs()...), fleet.WithSettle(0),
		fleet.WithOld(m.oldM), fleet.WithNew(m.newM),
		fleet.WithExpectMembers(fleet.Member{Name: "new-svc-0"}), fleet.WithExpectedOnly())
	if st, _ := obs.Poll(ctxT(t, 30*time.Second)); st.Verdict != fleet.Converged {
		t.Fatalf("wave gate: %s %v", st.Verdict, st.Reasons)
	}
}

func TestServerDownIsIncomplete(t *testing.T) {
	f := newFixture(t, 3)
	leaf := issue(t, f.newCA, "x")
	for i := 0; i < 3; i++ {
		f.mustDial(t, f.c.Servers[i].ClientURL, leaf, names("x-", 3)[i])
	}
	f.waitConns(t, 3)
	sys := f.system(t, 0)
	newM := fleet.NewMaterial(leaf.Cert)
	urls := f.c.MonitorURLs()
	f.c.Servers[2].Stop()

	for name, src := range map[string]fleet.Source{"http": fleet.Monitor(urls...), "system": &fleet.SystemSource{Conn: sys, Timeout: time.Second}} {
		t.Run(name, func(t *testing.T) {
			obs, err := fleet.New(src, fleet.WithNew(newM), fleet.WithExpectServers(3), fleet.WithSettle(0))
			if err != nil {
				t.Fatal(err)
			}
			st, err := obs.Poll(ctxT(t, 30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if st.Verdict != fleet.Incomplete {
				t.Fatalf("verdict %s %v, want incomplete", st.Verdict, st.Reasons)
			}
		})
	}
}

// TestSystemScansServersBeyondExpected expects two servers of three: the
// third, where the only straggler is, must be scanned all the same, or the
// view would converge with a member still on old material.
func TestSystemScansServersBeyondExpected(t *testing.T) {
	f := newFixture(t, 3)
	oldLeaf, newLeaf := issue(t, f.oldCA, "x"), issue(t, f.newCA, "x")
	for i := 0; i < 3; i++ {
		leaf := newLeaf
		if i == 2 {
			leaf = oldLeaf
		}
		f.mustDial(t, f.c.Servers[i].ClientURL, leaf, names("x-", 3)[i])
	}
	f.waitConns(t, 3)
	for name, want := range map[string]fleet.Option{
		"count": fleet.WithExpectServers(2),
		"names": fleet.WithExpectServerNames("n1", "n2"),
	} {
		t.Run(name, func(t *testing.T) {
			obs, err := fleet.New(fleet.System(f.system(t, 0)), want, fleet.WithSettle(0),
				fleet.WithOld(fleet.NewMaterial(oldLeaf.Cert)), fleet.WithNew(fleet.NewMaterial(newLeaf.Cert)))
			if err != nil {
				t.Fatal(err)
			}
			st, err := obs.Poll(ctxT(t, 30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Servers) != 3 || st.Counts != (fleet.Counts{Total: 3, New: 2, Old: 1}) {
				t.Fatalf("%d servers scanned, counts %+v; want 3 servers, 2 new, 1 old", len(st.Servers), st.Counts)
			}
			if st.Verdict != fleet.NotConverged {
				t.Fatalf("verdict %s %v, want not-converged", st.Verdict, st.Reasons)
			}
		})
	}
}

// TestServerStopsDuringScan stops a server while the collector pages
// through it: the look must end incomplete or, if it saw a whole
// consistent view of three servers before the stop, complete, but never
// converged on two servers.
func TestServerStopsDuringScan(t *testing.T) {
	f := newFixture(t, 3)
	leaf := issue(t, f.newCA, "x")
	f.dialMany(t, 150, func(i int) client {
		return client{url: f.c.Servers[i%3].ClientURL, leaf: leaf, name: names("x-", 150)[i]}
	})
	f.waitConns(t, 150)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithNew(fleet.NewMaterial(leaf.Cert)),
		fleet.WithSettle(0), fleet.WithPageSize(5), fleet.WithInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		time.Sleep(20 * time.Millisecond)
		f.c.Servers[1].Stop()
	}()
	for i := 0; ; i++ {
		st, err := obs.Poll(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-stopped:
			if st.Verdict != fleet.Incomplete && st.Verdict != fleet.Converged {
				t.Fatalf("verdict %s", st.Verdict)
			}
			if st.Verdict == fleet.Converged && st.Counts.Total != 150 {
				t.Fatalf("converged on %d of 150", st.Counts.Total)
			}
			// After the stop, looks are incomplete.
			st, _ = obs.Poll(ctxT(t, 30*time.Second))
			if st.Verdict != fleet.Incomplete {
				t.Fatalf("after stop: %s", st.Verdict)
			}
			return
		default:
			if st.Verdict == fleet.Converged && st.Counts.Total != 150 {
				t.Fatalf("converged on %d of 150", st.Counts.Total)
			}
		}
	}
}

func TestNoMaterialJustReports(t *testing.T) {
	f := newFixture(t, 1)
	f.mustDial(t, f.c.Servers[0].ClientURL, issue(t, f.other, "y"), "y")
	f.waitConns(t, 1)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...))
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Check(ctxT(t, 30*time.Second))
	if err != nil || st.Verdict != fleet.Complete || st.Err() != nil {
		t.Fatalf("%v %s %v", err, st.Verdict, st.Reasons)
	}
	if st.Counts != (fleet.Counts{Total: 1, Unknown: 1}) {
		t.Fatalf("counts %+v", st.Counts)
	}
}

func TestStrictRefusesUnknown(t *testing.T) {
	f := newFixture(t, 1)
	n := issue(t, f.newCA, "n")
	f.mustDial(t, f.c.Servers[0].ClientURL, n, "n")
	f.mustDial(t, f.c.Servers[0].ClientURL, issue(t, f.other, "y"), "y")
	f.waitConns(t, 2)
	for _, strict := range []bool{false, true} {
		opts := []fleet.Option{fleet.WithNew(fleet.NewMaterial(n.Cert)), fleet.WithSettle(0)}
		if strict {
			opts = append(opts, fleet.WithStrict())
		}
		obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), opts...)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := obs.Poll(ctxT(t, 30*time.Second))
		want := fleet.Converged
		if strict {
			want = fleet.NotConverged
		}
		if st.Verdict != want {
			t.Fatalf("strict=%v: %s %v", strict, st.Verdict, st.Reasons)
		}
	}
}

// A steady fleet costs one scan a look after the first: the previous
// look's last scan is the first of the agreeing pair. A change between
// looks costs a rescan.
func TestPollReusesPreviousScan(t *testing.T) {
	f := newFixture(t, 2)
	f.mustDial(t, f.c.Servers[0].ClientURL, issue(t, f.newCA, "a"), "a")
	f.waitConns(t, 1)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	first, err := obs.Poll(ctx)
	if err != nil || first.Scans < 2 {
		t.Fatalf("first look: %v, %d scans", err, first.Scans)
	}
	second, err := obs.Poll(ctx)
	if err != nil || second.Scans != 1 || second.Counts.Total != 1 {
		t.Fatalf("second look: %v, %d scans, %+v", err, second.Scans, second.Counts)
	}
	f.mustDial(t, f.c.Servers[1].ClientURL, issue(t, f.newCA, "b"), "b")
	f.waitConns(t, 2)
	third, err := obs.Poll(ctx)
	if err != nil || third.Scans < 2 || third.Counts.Total != 2 {
		t.Fatalf("after a change: %v, %d scans, %+v", err, third.Scans, third.Counts)
	}

	// Servers reads identities only.
	srvs, err := obs.Servers(ctx)
	if err != nil || len(srvs) != 2 {
		t.Fatalf("servers: %v %+v", err, srvs)
	}
	for _, s := range srvs {
		if !s.Answered || s.Name == "" || s.ConfigLoadTime.IsZero() || s.TLSCertNotAfter.IsZero() || s.Counts.Total != 0 {
			t.Errorf("server %+v", s)
		}
	}
}

// Processes that name their connection after the host share that name but
// not their leaves: expected by fingerprint, each is counted, none is
// superseded by the others.
func TestSharedNameMembersByFingerprint(t *testing.T) {
	f := newFixture(t, 2)
	var members []fleet.Member
	newM := fleet.NewMaterial()
	for i := 0; i < 3; i++ {
		l := issue(t, f.newCA, "replica")
		newM.Add(l.Cert)
		f.mustDial(t, f.c.Servers[i%2].ClientURL, l, "host-a")
		members = append(members, fleet.Member{Fingerprints: []string{pki.CertSHA256(l.Cert)}})
	}
	// A fourth process on the same host still on an old leaf is not in
	// the wave: it must not hold the wave's gate.
	straggler := issue(t, f.oldCA, "replica")
	f.mustDial(t, f.c.Servers[0].ClientURL, straggler, "host-a")
	f.waitConns(t, 4)
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithSettle(0), fleet.WithNew(newM),
		fleet.WithOld(fleet.NewMaterial(straggler.Cert)), fleet.WithExpectMembers(members...), fleet.WithExpectedOnly())
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Poll(ctxT(t, 30*time.Second))
	if err != nil || st.Verdict != fleet.Converged || st.Counts.New != 3 {
		t.Fatalf("%v %s %+v %v", err, st.Verdict, st.Counts, st.Reasons)
	}
}
