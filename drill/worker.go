package drill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/internal/workerreport"
)

// workerPackage is the worker the drill runs with Config.Processes.
const workerPackage = "github.com/natscert/natscert/examples/worker"

// Worker environment: the subjects the worker serves are <prefix>.rpc
// (queue group <prefix>) and <prefix>.fanout.
const workerPrefix = "drill"

// workerPool owns the worker binary and every worker process.
type workerPool struct {
	bin string
	mu  sync.Mutex
	all []*workerProc
}

// workerProc is one run of a worker process for one member.
type workerProc struct {
	cmd    *exec.Cmd
	report string // where it writes its report at exit (WORKER_REPORT)
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's error, set before done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// findWorker returns the worker binary: the one named in the
// configuration, natscert-worker next to the running executable, or one built with
// go build into the user cache directory, keyed by this build's version
// so that an upgraded natscert does not run a stale worker.
func findWorker(ctx context.Context, named string) (string, error) {
	if named != "" {
		if _, err := os.Stat(named); err != nil {
			return "", fmt.Errorf("drill: worker: %w", err)
		}
		return named, nil
	}
	if exe, err := os.Executable(); err == nil {
		// Only a distinctive name: a plain "worker" next to the binary
		// could be anything.
		p := filepath.Join(filepath.Dir(exe), "natscert-worker")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	key, stamped := buildKey()
	bin := filepath.Join(cache, "natscert", "worker-"+key)
	if _, err := os.Stat(bin); err == nil && stamped {
		return bin, nil
	}
	// Unstamped builds (go run, tests) rebuild every time: go's own build
	// cache makes that quick, and the worker always matches the sources.
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("drill: worker: %w", err)
	}
	tmp := bin + ".tmp-" + strconv.Itoa(os.Getpid())
	out, err := exec.CommandContext(ctx, "go", "build", "-o", tmp, workerPackage).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("drill: worker: go build %s (run inside the natscert module, or pass the worker binary): %w\n%s", workerPackage, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("drill: worker: %w", err)
	}
	return bin, nil
}

// buildKey names this build: module version and VCS revision when the
// binary was stamped with them.
func buildKey() (key string, stamped bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", false
	}
	h := sha256.New()
	fmt.Fprintln(h, bi.GoVersion, bi.Main.Version)
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" || s.Key == "vcs.modified" || s.Key == "vcs.time" {
			fmt.Fprintln(h, s.Key, s.Value)
			stamped = s.Key == "vcs.revision" || stamped
		}
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		stamped = true
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:8]), stamped
}

// startWorkers builds or finds the worker and starts one process per
// member, a few at a time.
func (d *run) startWorkers(ctx context.Context) error {
	bin, err := findWorker(ctx, d.cfg.WorkerPath)
	if err != nil {
		return err
	}
	d.workers = &workerPool{bin: bin}
	for _, m := range d.members {
		m.pool = d.workers
		m.servers = d.setup.cluster.Servers
		if err := m.startProcess(); err != nil {
			return err
		}
	}
	return waitSubscribed(ctx, d.setup.cluster.Servers, d.members, 60*time.Second)
}

// startProcess starts the member's worker with the member's files, and a
// report file of its own for each run. Restart members run it
// start-up-loaded (WORKER_STATIC=1), as services do today.
func (m *member) startProcess() error {
	m.mu.Lock()
	m.runs++
	report := filepath.Join(m.dir, fmt.Sprintf("worker-%d.json", m.runs))
	m.mu.Unlock()
	// A report left by an earlier drill in the same directory must not
	// stand in for a worker that dies.
	if err := os.Remove(report); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drill: %w", err)
	}
	cmd := exec.Command(m.pool.bin)
	cmd.Env = append(os.Environ(),
		"NATS_URL="+m.url, "NATS_TLS_CA="+m.rootsFile, "NATS_TLS_CERT="+m.certFile, "NATS_TLS_KEY="+m.keyFile,
		"NATS_CLIENT_NAME="+m.name, "WORKER_PREFIX="+workerPrefix, "WORKER_PUBLISH_INTERVAL=0", "WORKER_LOG_LEVEL=info",
		"WORKER_REPORT="+report, "NATSCERT_SPREAD="+m.spread.String(), "NATSCERT_RECHECK=2s",
	)
	if m.strategy == StrategyRestart {
		cmd.Env = append(cmd.Env, "WORKER_STATIC=1")
	} else {
		cmd.Env = append(cmd.Env, "NATSCERT_STRATEGY="+string(m.busStrategy()))
	}
	p := &workerProc{cmd: cmd, report: report, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("drill: start worker for %s: %w", m.name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	m.pool.mu.Lock()
	m.pool.all = append(m.pool.all, p)
	m.pool.mu.Unlock()
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return nil
}

// stopProcess stops the member's worker with SIGTERM, as an orchestrator
// does, waits for it, and adds its report to the member's record.
func (m *member) stopProcess() {
	m.mu.Lock()
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	r, err := workerreport.Read(p.report)
	if err != nil {
		m.fromLog(p.stderr.String())
		return
	}
	m.ledger.Merge(r.Fanout)
	for _, id := range r.Answered {
		m.answers.answered(id, m.idx)
	}
	m.answered.Add(int64(r.Handled))
	for reason, n := range r.Status.Failures {
		if tlsOrAuth(reason) {
			m.tlsFailures.Add(int64(n))
		}
	}
	m.mu.Lock()
	m.attempts += r.Status.Attempts
	m.mu.Unlock()
}

var (
	fanoutReceived = regexp.MustCompile(`fanout_received=(\d+)`)
	workerFailure  = regexp.MustCompile(`level=(WARN|ERROR).*(?i:tls|certificate|rejected|authori)`)
)

// fromLog is the fallback for a worker that died without its report: how
// many fan-out messages it logged at exit (not which), TLS failures from
// its log lines, and one connection attempt, the one that subscribed it.
func (m *member) fromLog(log string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unreported++
	if mm := fanoutReceived.FindStringSubmatch(log); mm != nil {
		n, _ := strconv.ParseInt(mm[1], 10, 64)
		m.unreportedReceived += n
	}
	m.tlsFailures.Add(int64(len(workerFailure.FindAllString(log, -1))))
	m.attempts++
}

func (p *workerPool) stop() {
	p.mu.Lock()
	all := p.all
	p.mu.Unlock()
	for _, w := range all {
		select {
		case <-w.done:
		default:
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	}
}

// waitSubscribed waits until every one of ms has a connection with both
// subscriptions on one of servers: worker processes report only at exit,
// so the drill reads the servers' view instead. A worker that exits
// meanwhile ends the wait with its stderr.
func waitSubscribed(ctx context.Context, servers []*embedded.Server, ms []*member, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		subs := map[string]uint32{}
		for _, s := range servers {
			if s.NATS == nil {
				continue
			}
			cz, err := s.NATS.Connz(&server.ConnzOptions{Limit: 1 << 20})
			if err != nil {
				continue
			}
			for _, c := range cz.Conns {
				subs[c.Name] = max(subs[c.Name], c.NumSubs)
			}
		}
		missing := 0
		for _, m := range ms {
			if subs[m.name] < 2 {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		for _, m := range ms {
			m.mu.Lock()
			p := m.proc
			m.mu.Unlock()
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				return fmt.Errorf("drill: worker for %s exited: %v\n%s", m.name, p.err, clip(p.stderr.String(), 2000))
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drill: %d worker(s) not connected and subscribed within %v", missing, timeout)
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("drill: %w", ctx.Err())
		}
	}
}
