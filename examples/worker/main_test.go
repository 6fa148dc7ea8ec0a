package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/internal/workerreport"
	"github.com/natscert/natscert/pki"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is the worker binary, one embedded server trusting a client CA,
// and worker-1's certificate files.
type fixture struct {
	t                 *testing.T
	dir, bin          string
	ca                *pki.CA
	cl                *embedded.Cluster
	certFile, keyFile string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir()}
	f.bin = filepath.Join(f.dir, "worker")
	if out, err := exec.Command("go", "build", "-o", f.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var err error
	if f.ca, err = pki.NewCA("worker test clients"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "servers"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.cl, err = embedded.Start(embedded.Options{Dir: filepath.Join(f.dir, "servers"), ClientCA: f.ca.CertPEM, DNSOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cl.Close)
	f.certFile, f.keyFile = filepath.Join(f.dir, "tls.crt"), filepath.Join(f.dir, "tls.key")
	return f
}

// issue writes a new leaf for worker-1 where the worker reads it.
func (f *fixture) issue() *pki.Leaf {
	l, err := f.ca.Issue("worker-1", pki.RoleClient)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := l.WriteFiles(f.certFile, f.keyFile); err != nil {
		f.t.Fatal(err)
	}
	return l
}

// worker is one running worker process.
type worker struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
	// exited is closed once the process has been waited for; cleanup reads
	// it instead of cmd.ProcessState, which Wait writes on another goroutine.
	exited chan struct{}
}

// start runs the worker as worker-1 on the fixture's files, with env on
// top; the test's cleanup kills it if it is still running.
func (f *fixture) start(env ...string) *worker {
	w := &worker{cmd: exec.Command(f.bin), logs: &syncBuffer{}, done: make(chan error, 1), exited: make(chan struct{})}
	w.cmd.Env = append(append(os.Environ(),
		"NATS_URL="+f.cl.Servers[0].ClientURL, "NATS_TLS_CA="+f.cl.ServerCAFile(),
		"NATS_TLS_CERT="+f.certFile, "NATS_TLS_KEY="+f.keyFile, "NATS_CLIENT_NAME=worker-1"), env...)
	w.cmd.Stderr = w.logs
	if err := w.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() {
		err := w.cmd.Wait()
		close(w.exited)
		w.done <- err
	}()
	f.t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
		if f.t.Failed() {
			f.t.Logf("worker log:\n%s", w.logs.String())
		}
	})
	return w
}

// stop sends SIGTERM and expects a clean exit.
func (w *worker) stop(t *testing.T) {
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit on SIGTERM")
	}
}

// conn is worker-1's connection in the server's view, nil when it has none.
func (f *fixture) conn() *server.ConnInfo {
	cz, err := f.cl.Servers[0].NATS.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name == "worker-1" && len(c.TLSPeerCerts) > 0 {
			return c
		}
	}
	return nil
}

func (f *fixture) presented() string {
	if c := f.conn(); c != nil {
		return c.TLSPeerCerts[0].CertSha256
	}
	return ""
}

func (f *fixture) wait(what string, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWorkerRotatesWithoutRestart runs the worker as a process, rotates
// its files, and expects the server to see the new certificate, then a
// clean exit on SIGTERM, and the report of what it received and answered.
func TestWorkerRotatesWithoutRestart(t *testing.T) {
	f := newFixture(t)
	first := f.issue()
	w := f.start("NATSCERT_STRATEGY=swap", "NATSCERT_SPREAD=100ms", "WORKER_PUBLISH_INTERVAL=50ms",
		"WORKER_REPORT="+filepath.Join(f.dir, "report.json"))
	f.wait("first certificate", func() bool { return f.presented() == pki.CertSHA256(first.Cert) })

	probe, err := f.ca.Issue("probe", pki.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	pc := probe.TLSCertificate()
	nc, err := nats.Connect(f.cl.Servers[0].ClientURL,
		nats.ClientTLSConfig(func() (tls.Certificate, error) { return pc, nil }, nil), nats.RootCAs(f.cl.ServerCAFile()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r, err := nc.Request("worker.rpc", []byte("hi"), 5*time.Second)
	if err != nil || !strings.HasPrefix(string(r.Data), "worker-1 ") {
		t.Fatalf("rpc: %v %v", r, err)
	}

	second := f.issue()
	f.wait("second certificate", func() bool { return f.presented() == pki.CertSHA256(second.Cert) })
	if _, err := nc.Request("worker.rpc", []byte("7"), 5*time.Second); err != nil {
		t.Fatalf("rpc after rotation: %v", err)
	}
	// Numbered as the drill numbers its fan-out; the worker's own
	// publishes on the subject are not.
	for _, seq := range []uint64{1, 2, 3, 5, 3} {
		if err := nc.Publish("worker.fanout", seqledger.Append(nil, seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	w.stop(t)
	for _, want := range []string{"connected to nats", "nats material loaded", "nats connection swapped", "worker stopping"} {
		if !strings.Contains(w.logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	rep, err := workerreport.Read(filepath.Join(f.dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	fo := rep.Fanout
	if !slices.Equal(fo.Received, []seqledger.Range{{1, 3}, {5, 5}}) || fo.Deliveries != 5 || fo.Duplicates != 1 || fo.OutOfOrder != 0 || rep.Unnumbered == 0 {
		t.Errorf("fan-out %+v, %d unnumbered", fo, rep.Unnumbered)
	}
	if !slices.Equal(rep.Answered, []uint64{7}) || rep.Handled != 2 {
		t.Errorf("answered %v of %d handled, want [7] of 2", rep.Answered, rep.Handled)
	}
	st := rep.Status
	if rep.Name != "worker-1" || st.Swaps != 1 || st.Attempts < 2 || st.Presented == nil || st.Presented.CertSHA256 != pki.CertSHA256(second.Cert) {
		t.Errorf("status %+v", st)
	}
}

// A start-up-loaded worker (WORKER_STATIC=1) reports what nats.go tells of
// its attempts: kicked once, it reconnects once on the certificate it
// loaded at start.
func TestStaticWorkerReport(t *testing.T) {
	f := newFixture(t)
	first := f.issue()
	w := f.start("WORKER_STATIC=1", "WORKER_PUBLISH_INTERVAL=0", "WORKER_REPORT="+filepath.Join(f.dir, "report.json"))
	f.wait("first connection", func() bool { return f.conn() != nil })
	cid := f.conn().Cid
	f.issue() // never read: the worker loaded its files once
	if err := f.cl.Servers[0].NATS.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	f.wait("reconnect", func() bool { c := f.conn(); return c != nil && c.Cid != cid })
	w.stop(t)

	rep, err := workerreport.Read(filepath.Join(f.dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Status
	if st.Strategy != "static" || st.Attempts != 2 || st.Connects != 2 || st.Reconnects != 1 || st.FailedAttempts != 0 ||
		st.Presented == nil || st.Presented.CertSHA256 != pki.CertSHA256(first.Cert) {
		t.Errorf("status %+v", st)
	}
}
