package fleet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// TestLoadStatus10k measures one look at 10,000 connections on 3 servers,
// through HTTP and through the system account. It reports, it does not
// assert on time. The clients live in a child process (this test binary
// again): one process cannot hold both ends of 10,000 TLS connections
// under a 20,000 file descriptor limit.
//
//	NATSCERT_LOAD=1 go test -run TestLoadStatus10k -v ./fleet
func TestLoadStatus10k(t *testing.T) {
	loadGate(t)
	const n = 10000
	f := newFixture(t, 3)
	dir := t.TempDir()
	var newLeaves []*pki.Leaf
	for i := 0; i < 4; i++ {
		l := issue(t, f.newCA, "member-"+strconv.Itoa(i))
		if err := l.WriteFiles(filepath.Join(dir, fmt.Sprintf("leaf-%d.pem", i)), filepath.Join(dir, fmt.Sprintf("leaf-%d-key.pem", i))); err != nil {
			t.Fatal(err)
		}
		newLeaves = append(newLeaves, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLoadHelperClients$")
	cmd.Env = append(os.Environ(), "NATSCERT_FLEET_CLIENTS="+strconv.Itoa(n), "NATSCERT_FLEET_DIR="+dir,
		"NATSCERT_FLEET_URLS="+strings.Join(f.c.ClientURLs(), ","), "NATSCERT_FLEET_CA="+f.c.ServerCAFile())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	dialStart := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if !ready {
		t.Fatal("client process did not get ready")
	}
	f.waitConns(t, n)
	t.Logf("%d connections up in %s", n, time.Since(dialStart).Round(time.Millisecond))

	var members []fleet.Member
	for _, name := range names("m-", n) {
		members = append(members, fleet.Member{Name: name})
	}
	newM := fleet.NewMaterial()
	for _, l := range newLeaves {
		newM.Add(l.Cert)
	}
	sys := f.system(t, 0)
	for _, src := range []struct {
		name string
		src  fleet.Source
		page int
	}{
		{"http", fleet.Monitor(f.c.MonitorURLs()...), fleet.DefaultPageSize},
		{"system", &fleet.SystemSource{Conn: sys, Timeout: 30 * time.Second}, fleet.DefaultPageSize},
		{"http", fleet.Monitor(f.c.MonitorURLs()...), 4096},
		{"system", &fleet.SystemSource{Conn: sys, Timeout: 30 * time.Second}, 4096},
	} {
		obs, err := fleet.New(src.src, fleet.WithNew(newM), fleet.WithExpectMembers(members...),
			fleet.WithExpectServers(3), fleet.WithSettle(0), fleet.WithPageSize(src.page))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			start := time.Now()
			st, err := obs.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			if st.Verdict != fleet.Converged || st.Counts.New != n {
				t.Fatalf("%s: %s new=%d %v", src.name, st.Verdict, st.Counts.New, st.Reasons)
			}
			t.Logf("%s, page size %d: look %d over %d connections: %s (%d scans, %s a scan)", src.name, src.page, i+1, n,
				d.Round(time.Millisecond), st.Scans, (d / time.Duration(st.Scans)).Round(time.Millisecond))
		}
	}
}

// TestLoadHelperClients is the client process of TestLoadStatus10k.
func TestLoadHelperClients(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NATSCERT_FLEET_CLIENTS"))
	if n == 0 {
		t.Skip("helper process for TestLoadStatus10k")
	}
	dir, ca := os.Getenv("NATSCERT_FLEET_DIR"), os.Getenv("NATSCERT_FLEET_CA")
	urls := strings.Split(os.Getenv("NATSCERT_FLEET_URLS"), ",")
	var certs []tls.Certificate
	for i := 0; i < 4; i++ {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, fmt.Sprintf("leaf-%d.pem", i)), filepath.Join(dir, fmt.Sprintf("leaf-%d-key.pem", i)))
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	conns := make([]*nats.Conn, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cert := certs[i%len(certs)]
				nc, err := nats.Connect(urls[i%len(urls)], nats.Name("m-"+strconv.Itoa(i)),
					nats.ClientTLSConfig(func() (tls.Certificate, error) { return cert, nil }, nil),
					nats.RootCAs(ca), nats.Timeout(30*time.Second))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = nc
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	for _, nc := range conns {
		nc.Close()
	}
}
