package material

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// waitFor is how long a test waits for an outcome. Generous: the machine
// is shared, and only correctness is asserted, never speed.
const waitFor = 20 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newCA(t testing.TB, cn string, opts ...pki.Option) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *pki.CA, cn string, opts ...pki.Option) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(cn, pki.RoleClient, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fp(c *x509.Certificate) string { return pki.CertSHA256(c) }

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// recorder keeps every event a source reports.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// has reports whether some event of kind k satisfies match.
func (r *recorder) has(k EventKind, match func(Event) bool) bool {
	for _, ev := range r.all() {
		if ev.Kind == k && (match == nil || match(ev)) {
			return true
		}
	}
	return false
}

func hasCode(code string) func(Event) bool {
	return func(ev Event) bool {
		for _, f := range ev.Findings {
			if f.Code == code && f.Severity == pki.SeverityError {
				return true
			}
		}
		return false
	}
}

// env is a directory of material and a source watching it.
type env struct {
	t     *testing.T
	ca    *pki.CA
	dir   string
	files Files
	rec   *recorder
	src   *FileSource
	// good holds the fingerprints of every leaf a test wrote as a good
	// set: a source must never serve anything else.
	good map[string]bool
}

// newEnv writes a first good leaf and roots bundle and starts a source on
// them with the re-check off, so that only file-system events drive it.
func newEnv(t *testing.T, opts ...FileOption) *env {
	t.Helper()
	e := &env{t: t, ca: newCA(t, "CA 1"), dir: t.TempDir(), rec: &recorder{}, good: map[string]bool{}}
	e.files = Files{
		Cert:  filepath.Join(e.dir, "cert.pem"),
		Key:   filepath.Join(e.dir, "key.pem"),
		Roots: filepath.Join(e.dir, "ca.pem"),
	}
	leaf := issue(t, e.ca, "client 1")
	e.writeLeaf(leaf)
	writeFile(t, e.files.Roots, e.ca.CertPEM)
	e.start(opts...)
	e.assertServes(leaf)
	return e
}

func (e *env) start(opts ...FileOption) {
	e.t.Helper()
	opts = append([]FileOption{WithRecheckInterval(0), WithLogger(quiet), WithOnEvent(e.rec.add)}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	src, err := NewFileSource(ctx, e.files, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.src = src
	e.t.Cleanup(func() {
		if err := src.Close(); err != nil {
			e.t.Error(err)
		}
		e.assertNeverBad()
	})
}

// writeLeaf writes a good leaf the way pki does: key, then cert, each
// renamed over the old file.
func (e *env) writeLeaf(l *pki.Leaf) {
	e.t.Helper()
	e.good[fp(l.Cert)] = true
	if err := l.WriteFiles(e.files.Cert, e.files.Key); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) served() string {
	c, err := e.src.Cert()
	if err != nil {
		e.t.Fatal(err)
	}
	return fp(c.Leaf)
}

func (e *env) assertServes(l *pki.Leaf) {
	e.t.Helper()
	if got, want := e.served(), fp(l.Cert); got != want {
		e.t.Fatalf("serves %.16s, want %.16s", got, want)
	}
	if snap := e.src.Snapshot(); snap.Leaf == nil || snap.Leaf.CertSHA256 != fp(l.Cert) {
		e.t.Fatalf("snapshot leaf %+v, want %.16s", snap.Leaf, fp(l.Cert))
	}
}

func (e *env) waitServes(l *pki.Leaf) {
	e.t.Helper()
	want := fp(l.Cert)
	eventually(e.t, "the new leaf to be served", func() bool { return e.served() == want })
	e.assertServes(l)
}

func (e *env) waitEvent(what string, k EventKind, match func(Event) bool) {
	e.t.Helper()
	eventually(e.t, what, func() bool { return e.rec.has(k, match) })
}

// assertNeverBad checks that every set ever loaded was one written as good.
func (e *env) assertNeverBad() {
	e.t.Helper()
	for _, ev := range e.rec.all() {
		if ev.Kind != EventLoaded || ev.Snapshot.Leaf == nil {
			continue
		}
		if !e.good[ev.Snapshot.Leaf.CertSHA256] {
			e.t.Errorf("loaded a set that was never written as good: %+v", ev.Snapshot.Leaf)
		}
	}
}

func mustRemove(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}
