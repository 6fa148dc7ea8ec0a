package drill

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/bus"
	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

// member is one simulated control-plane client: its own leaf and name, a
// home server, a subscription to the fan-out stream and a place in the
// responders' queue group, and the record of what the rotation cost it.
type member struct {
	idx       int
	name      string
	url       string // its home server first
	dir       string
	certFile  string
	keyFile   string
	rootsFile string
	old, new  *pki.Leaf
	newCert   string // new leaf's path, handed to the rotation
	newKey    string
	strategy  Strategy
	spread    time.Duration
	answers   *answerBook
	quiet     *slog.Logger

	ledger seqledger.Ledger

	tlsFailures atomic.Int64 // TLS and authorization failures
	answered    atomic.Int64 // requests this member replied to

	mu         sync.Mutex
	conn       *bus.Conn
	src        material.Source
	restarts   int
	restartGap time.Duration // longest close-to-subscribed time of a restart
	attempts   uint64        // connection attempts of closed connections

	// With Config.Processes the member is a worker process instead of a
	// bus connection in this process.
	pool    *workerPool
	servers []*embedded.Server // where a worker is looked for
	proc    *workerProc
	runs    int // worker processes started, which numbers their reports
	// Of the workers that left no report (they died): how many, and the
	// fan-out deliveries their logs counted.
	unreported         int
	unreportedReceived int64
}

// newMember issues the member's old and new leaves and writes its current
// files where it reads them, as a deployment would.
func newMember(s *setup, idx int, strategy Strategy, answers *answerBook) (*member, error) {
	name := fmt.Sprintf("member-%04d", idx+1)
	dir := filepath.Join(s.dir, "members", name)
	if err := os.MkdirAll(filepath.Join(dir, "new"), 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	m := &member{
		idx: idx, name: name, dir: dir, strategy: strategy, answers: answers,
		certFile:  filepath.Join(dir, "cert.pem"),
		keyFile:   filepath.Join(dir, "key.pem"),
		rootsFile: s.cluster.ServerCAFile(),
		newCert:   filepath.Join(dir, "new", "cert.pem"),
		newKey:    filepath.Join(dir, "new", "key.pem"),
		quiet:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	// The home server first: members spread evenly over the cluster, and
	// a reconnect or swap stays on the same server.
	m.url = s.url(idx)
	var err error
	if m.old, err = s.oldCA.Issue(name, pki.RoleClient); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if m.new, err = s.newCA.Issue(name, pki.RoleClient); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if err := m.old.WriteFiles(m.certFile, m.keyFile); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if err := m.new.WriteFiles(m.newCert, m.newKey); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	return m, nil
}

// busStrategy maps the drill's strategy to what the member's connection
// does when its files change.
func (m *member) busStrategy() bus.Strategy {
	switch m.strategy {
	case StrategyReconnect:
		return bus.StrategyReconnect
	case StrategySwap:
		return bus.StrategySwap
	}
	return bus.StrategyNone
}

// start loads the member's material, connects, subscribes and flushes, so
// that its interest is known to its server when start returns. Restart
// members load their files once (a StaticSource), as today's processes do;
// the others watch them (a FileSource).
func (m *member) start(ctx context.Context) error {
	if m.pool != nil {
		return m.startProcess()
	}
	// nats.go's FlushWithContext wants a deadline, and a member that
	// cannot connect in this time is a failed restart, not a slow one.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var src material.Source
	var err error
	if m.strategy == StrategyRestart {
		src, err = material.LoadStaticSource(m.certFile, m.keyFile, m.rootsFile)
	} else {
		src, err = material.NewFileSource(ctx, material.Files{Cert: m.certFile, Key: m.keyFile, Roots: m.rootsFile},
			material.WithRecheckInterval(2*time.Second), material.WithLogger(m.quiet))
	}
	if err != nil {
		return fmt.Errorf("drill: %s: %w", m.name, err)
	}
	conn, err := bus.Connect(ctx, m.url,
		bus.WithSource(src), bus.WithStrategy(m.busStrategy()), bus.WithName(m.name),
		bus.WithSpread(m.spread), bus.WithLogger(m.quiet), bus.WithFailureHandler(m.onFailure),
		bus.WithNATSOptions(nats.ReconnectBufSize(8<<20)))
	if err != nil {
		_ = src.Close()
		return fmt.Errorf("drill: %s: %w", m.name, err)
	}
	if _, err := conn.Subscribe(fanoutSubject, m.onFanout); err == nil {
		_, err = conn.QueueSubscribe(requestSubject, responderQueue, m.onRequest)
	}
	if err == nil {
		err = conn.FlushWithContext(ctx)
	}
	if err != nil {
		_ = conn.Close()
		_ = src.Close()
		return fmt.Errorf("drill: %s: subscribe: %w", m.name, err)
	}
	m.mu.Lock()
	m.conn, m.src = conn, src
	m.mu.Unlock()
	return nil
}

func (m *member) onFanout(msg *nats.Msg) {
	if seq, ok := seqledger.Decode(msg.Data); ok {
		m.ledger.Record(seq)
	}
}

func (m *member) onRequest(msg *nats.Msg) {
	if id, err := strconv.ParseUint(string(msg.Data), 10, 64); err == nil {
		m.answers.answered(id, m.idx)
	}
	m.answered.Add(1)
	_ = msg.Respond([]byte(m.name))
}

func (m *member) onFailure(f bus.Failure) {
	if tlsOrAuth(f.Reason) {
		m.tlsFailures.Add(1)
	}
}

// tlsOrAuth says whether a failure counts as a TLS/auth failure.
func tlsOrAuth(r bus.Reason) bool {
	switch r {
	case bus.ReasonRejected, bus.ReasonServerCertificate, bus.ReasonAuthorization, bus.ReasonTLS:
		return true
	}
	return false
}

// restart stops the member as a process exit would (no drain: a killed
// process does not drain) and starts it again on the files in place now.
func (m *member) restart(ctx context.Context) error {
	began := time.Now()
	m.stop()
	if err := m.start(ctx); err != nil {
		return err
	}
	if m.pool != nil {
		if err := waitSubscribed(ctx, m.servers, []*member{m}, 30*time.Second); err != nil {
			return err
		}
	}
	gap := time.Since(began)
	m.mu.Lock()
	m.restarts++
	m.restartGap = max(m.restartGap, gap)
	m.mu.Unlock()
	return nil
}

// stop closes the member's connection and source, or stops its worker.
func (m *member) stop() {
	if m.pool != nil {
		m.stopProcess()
		return
	}
	m.mu.Lock()
	conn, src := m.conn, m.src
	m.conn, m.src = nil, nil
	if conn != nil {
		m.attempts += conn.Status().Attempts
	}
	m.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	if src != nil {
		_ = src.Close()
	}
}

// reconnectAttempts counts every connection attempt after the member's
// first connect: reconnects, swap dials, restarts and failed attempts.
func (m *member) reconnectAttempts() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.attempts
	if m.conn != nil {
		n += m.conn.Status().Attempts
	}
	return max(int64(n)-1, 0)
}

// deliver writes new material where the member reads it, key first.
func (m *member) deliver(certPEM, keyPEM []byte) error {
	if err := pki.WriteFileAtomic(m.keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("drill: deliver to %s: %w", m.name, err)
	}
	if err := pki.WriteFileAtomic(m.certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("drill: deliver to %s: %w", m.name, err)
	}
	return nil
}
