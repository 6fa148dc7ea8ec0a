package material

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A directory that exists but cannot be watched is not climbed past (a
// watch on its parent reports nothing of its files' writes): it is logged
// and counted, the source keeps reading on its timers, and the count drops
// once the directory can be watched. The failure here is a path through a
// regular file (ENOTDIR), the one a test running as root can cause; an
// exhausted inotify limit (ENOSPC) or a denied permission takes the same
// path.
func TestUnwatchableDirectory(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "blocker")
	writeFile(t, blocker, []byte("a file where a directory should be"))
	dir := filepath.Join(blocker, "certs")
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}

	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	type result struct {
		src *FileSource
		err error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	go func() {
		src, err := NewFileSource(ctx, files, WithWaitForFiles(), WithRecheckInterval(0), WithLogger(logger), WithMetrics(m, "blocked"))
		got <- result{src, err}
	}()
	eventually(t, "the unwatchable directory to be counted", func() bool {
		return gauge(t, reg, "natscert_material_unwatched_directories") == 1
	})

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := issue(t, newCA(t, "CA"), "client").WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := gauge(t, reg, "natscert_material_unwatched_directories"); n != 0 {
		t.Errorf("%v unwatched directories once the directory exists, want 0", n)
	}
	hubs.mu.Lock()
	h := hubs.h
	hubs.mu.Unlock()
	h.mu.Lock()
	watched := h.refs[dir][r.src]
	h.mu.Unlock()
	if !watched {
		t.Error("the directory is not watched once it exists")
	}
	r.src.Close()
	out := logs.String()
	for _, want := range []string{"cannot watch directory", "dir=" + dir, "watching directory again"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "cannot watch directory"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
}

// gauge reads the value of a single-series family.
func gauge(t *testing.T, g prometheus.Gatherer, family string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == family && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// lockedBuffer is a log destination a test reads while sources write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
