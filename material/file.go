package material

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natscert/natscert/pki"
)

// Files names the files a FileSource reads. They may live in different
// directories.
type Files struct {
	// Cert is the PEM certificate to present, leaf first, then any
	// intermediates. Empty with Key empty: no certificate is presented.
	Cert string
	// Key is the PEM private key of Cert.
	Key string
	// Roots is the PEM CA bundle that verifies the peer (NATS_TLS_CA for a
	// client). Empty: the system roots.
	Roots string
	// Issuer, optional, is the PEM CA bundle that must verify Cert's chain
	// before Cert is served.
	Issuer string
}

func (f Files) check() error {
	switch {
	case (f.Cert == "") != (f.Key == ""):
		return errors.New("material: a certificate file needs a key file, and a key file a certificate file")
	case f.Cert == "" && f.Roots == "":
		return errors.New("material: no files: name a certificate and key, or a roots bundle")
	case f.Issuer != "" && f.Cert == "":
		return errors.New("material: an issuer bundle needs a certificate to check")
	}
	return nil
}

func (f Files) abs() (Files, error) {
	for _, p := range []*string{&f.Cert, &f.Key, &f.Roots, &f.Issuer} {
		if *p == "" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return f, fmt.Errorf("material: %w", err)
		}
		*p = a
	}
	return f, nil
}

// ErrClosed is returned by Refresh on a closed source.
var ErrClosed = errors.New("material: source is closed")

// waitPoll is how often a source waiting for its first set re-reads the
// files, in case the directory it watches for them is created late.
const waitPoll = 250 * time.Millisecond

// FileSource serves material read from files and re-reads it when they
// change. It watches the files' directories, not the files, so that it
// survives rename-over writes and Kubernetes Secret volume updates (a
// ..data symlink flipped to a new directory); it also re-reads on a slow
// timer in case an event is lost. A new set is validated before it is
// swapped in; a set that fails stays out and the last good set is served.
//
// Cert and RootCAs read an atomic pointer: no file I/O, no lock.
//
// Every load attempt is reported once, as an Event. The Reason of a loaded
// or unchanged set names its trigger: "start", "change" (a file-system
// event), "recheck", "refresh" or "wait" (WithWaitForFiles polling); a
// rejection's Reason names the files at fault and why.
type FileSource struct {
	files Files
	cfg   fileConfig
	name  string
	hub   *hub
	cur   atomic.Pointer[served]

	subMu   sync.Mutex
	subs    map[uint64]func(Event)
	nextSub uint64

	changed   chan struct{} // one slot: the files may have changed
	watchErr  chan error    // one slot: the watcher lost events
	refresh   chan chan struct{}
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the loop has returned
	loaded    chan struct{} // closed when the first set is served
	closeOnce sync.Once

	// bases maps each directory holding a file to the file names in it; it
	// never changes after NewFileSource.
	bases map[string]map[string]bool

	// Owned by the goroutine that loads: the constructor, then run.
	watching   map[string]bool  // directories watched through the hub
	unwatched  map[string]error // directories that exist but cannot be watched
	lastErr    error            // the last rejection, for a first load that never succeeds
	lastReason string
}

var (
	_ Source    = (*FileSource)(nil)
	_ Currenter = (*FileSource)(nil)
)

// NewFileSource reads, validates and serves the files, then watches them
// until Close. The first load must succeed, else NewFileSource returns its
// error (wrapping pki.ErrUnreadable when a file cannot be read, pki.ErrInvalid
// when what was read does not validate). With WithWaitForFiles it waits for
// a good set instead, until ctx ends. ctx bounds the first load only.
func NewFileSource(ctx context.Context, files Files, opts ...FileOption) (*FileSource, error) {
	if err := files.check(); err != nil {
		return nil, err
	}
	files, err := files.abs()
	if err != nil {
		return nil, err
	}
	cfg := defaultFileConfig()
	for _, o := range opts {
		o(&cfg)
	}
	s := &FileSource{
		files:    files,
		cfg:      cfg,
		name:     cfg.name,
		subs:     map[uint64]func(Event){},
		changed:  make(chan struct{}, 1),
		watchErr: make(chan error, 1),
		refresh:  make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		loaded:   make(chan struct{}),
		bases:    map[string]map[string]bool{},
	}
	if s.name == "" {
		s.name = files.Cert
		if s.name == "" {
			s.name = files.Roots
		}
	}
	for _, p := range []string{files.Cert, files.Key, files.Roots, files.Issuer} {
		if p == "" {
			continue
		}
		dir := filepath.Dir(p)
		if s.bases[dir] == nil {
			s.bases[dir] = map[string]bool{}
		}
		s.bases[dir][filepath.Base(p)] = true
	}
	if cfg.metrics != nil {
		if err := cfg.metrics.add(s.name); err != nil {
			return nil, err
		}
	}
	s.hub, err = joinHub()
	if err != nil {
		s.release()
		return nil, err
	}
	first := s.load("start")
	if first.Kind == EventRejected && !cfg.waitForFile {
		s.hub.leave(s, s.watching)
		s.release()
		return nil, &loadError{reason: first.Reason, err: first.Err}
	}
	if first.Kind != EventRejected {
		// Served already: ctx, which bounds only the wait for a first set,
		// has nothing left to bound.
		close(s.loaded)
		go s.run()
		return s, nil
	}
	go s.run()
	select {
	case <-s.loaded:
		return s, nil
	case <-ctx.Done():
		select {
		case <-s.loaded: // loaded just as ctx ended: take it
			return s, nil
		default:
		}
		_ = s.Close()
		// run has returned: lastErr is ours to read.
		if s.lastErr != nil {
			return nil, fmt.Errorf("material: waiting for files: %w: %w", ctx.Err(), &loadError{reason: s.lastReason, err: s.lastErr})
		}
		return nil, fmt.Errorf("material: waiting for files: %w", ctx.Err())
	}
}

// Cert returns the certificate of the set served now, or ErrNoCertificate
// when the source has no certificate file.
func (s *FileSource) Cert() (tls.Certificate, error) {
	cur := s.cur.Load()
	if cur == nil || len(cur.Cert.Certificate) == 0 {
		return tls.Certificate{}, ErrNoCertificate
	}
	return cur.Cert, nil
}

// RootCAs returns the roots of the set served now; nil (the system roots)
// when the source has no roots file.
func (s *FileSource) RootCAs() (*x509.CertPool, error) {
	cur := s.cur.Load()
	if cur == nil {
		return nil, nil
	}
	return cur.Roots, nil
}

// Snapshot describes the set served now.
func (s *FileSource) Snapshot() Snapshot {
	cur := s.cur.Load()
	if cur == nil {
		return Snapshot{}
	}
	return cur.Snapshot.clone()
}

// Current returns the set served now, from one read of the same pointer
// Cert, RootCAs and Snapshot read.
func (s *FileSource) Current() Set {
	cur := s.cur.Load()
	if cur == nil {
		return Set{}
	}
	set := cur.Set
	set.Snapshot = set.Snapshot.clone()
	return set
}

// Subscribe calls fn for every later outcome until cancel is called.
func (s *FileSource) Subscribe(fn func(Event)) (cancel func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		delete(s.subs, id)
	}
}

// Refresh re-reads the files now and returns once the attempt is reported.
func (s *FileSource) Refresh(ctx context.Context) error {
	req := make(chan struct{})
	select {
	case s.refresh <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops watching and waits for the watching goroutine to return.
// Cert and RootCAs keep serving the last set.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.hub.leave(s, s.watching)
		s.release()
	})
	return nil
}

// release frees the source's metrics name.
func (s *FileSource) release() {
	if s.cfg.metrics != nil {
		s.cfg.metrics.remove(s.name)
	}
}

// run is the source's one goroutine: it turns file-system events,
// re-check ticks and Refresh calls into load attempts until Close.
func (s *FileSource) run() {
	defer close(s.done)
	var recheck <-chan time.Time
	if s.cfg.recheck > 0 {
		t := time.NewTicker(s.cfg.recheck)
		defer t.Stop()
		recheck = t.C
	}
	// While no set is served (WithWaitForFiles), poll as well: the files'
	// directory may not exist yet, and a watch on its parent can miss a
	// whole tree created at once.
	var poll <-chan time.Time
	if s.cur.Load() == nil {
		t := time.NewTicker(waitPoll)
		defer t.Stop()
		poll = t.C
	}
	// A burst of events is read once it has been quiet for the debounce
	// interval, or at the latest maxDelay after it began, so that a writer
	// that never pauses still gets its files read.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	maxDelay := 10 * s.cfg.debounce
	pending := false
	var first time.Time
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		if now.Sub(first) < maxDelay || s.cfg.debounce == 0 {
			debounce.Reset(s.cfg.debounce)
		}
	}
	attempt := func(trigger string) {
		ev := s.load(trigger)
		if poll != nil && ev.Kind == EventLoaded {
			poll = nil
			close(s.loaded)
		}
	}
	for {
		select {
		case <-s.stop:
			return
		case <-s.changed:
			schedule()
		case err := <-s.watchErr:
			// An overflow loses events: read the files to be sure.
			s.cfg.logger.Warn("material: watch error", "source", s.name, "err", err)
			schedule()
		case <-debounce.C:
			pending = false
			attempt("change")
		case <-recheck:
			attempt("recheck")
		case <-poll:
			attempt("wait")
		case req := <-s.refresh:
			attempt("refresh")
			close(req)
		}
	}
}

// read reads every configured file.
func (s *FileSource) read() (pki.SetPEM, error) {
	var c pki.SetPEM
	for _, f := range []struct {
		what string
		path string
		dst  *[]byte
	}{
		{"cert", s.files.Cert, &c.Cert},
		{"key", s.files.Key, &c.Key},
		{"roots", s.files.Roots, &c.Roots},
		{"issuer", s.files.Issuer, &c.Issuer},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return pki.SetPEM{}, fmt.Errorf("material: %s file: %w: %w", f.what, pki.ErrUnreadable, err)
		}
		if b == nil {
			b = []byte{} // configured but empty is not "not configured"
		}
		*f.dst = b
	}
	return c, nil
}

// load makes one attempt: read, compare, validate, swap, report.
func (s *FileSource) load(trigger string) Event {
	s.ensureWatches()
	now := time.Now()
	ev := Event{Time: now}
	cur := s.cur.Load()
	c, err := s.read()
	switch {
	case err != nil:
		ev.Kind, ev.Err = EventRejected, err
	case cur != nil && hash(c) == cur.sum:
		ev.Kind = EventUnchanged
	default:
		next, fs, err := validate(c, pki.CheckOptions{Role: s.cfg.role, Skew: s.cfg.skew, Now: now})
		ev.Findings = fs.WithFiles(s.files.Cert, s.files.Key, s.files.Roots, s.files.Issuer)
		if err != nil {
			ev.Kind, ev.Err = EventRejected, err
			break
		}
		next.Snapshot.LoadedAt = now
		next.Snapshot.Generation = 1
		if cur != nil {
			next.Snapshot.Generation = cur.Snapshot.Generation + 1
		}
		next.Snapshot.CertFile, next.Snapshot.KeyFile = s.files.Cert, s.files.Key
		next.Snapshot.RootsFile, next.Snapshot.IssuerFile = s.files.Roots, s.files.Issuer
		s.cur.Store(next)
		ev.Kind = EventLoaded
	}
	if ev.Kind == EventRejected {
		ev.Reason = rejection(ev)
		// While waiting for a first set, the same rejection repeats every
		// poll; report it once.
		repeat := cur == nil && ev.Reason == s.lastReason
		s.lastErr, s.lastReason = ev.Err, ev.Reason
		if repeat {
			return ev
		}
	} else {
		ev.Reason = trigger
		s.lastErr, s.lastReason = nil, ""
	}
	if after := s.cur.Load(); after != nil {
		ev.Snapshot = after.Snapshot.clone()
	}
	s.report(ev, trigger)
	return ev
}

// report logs an outcome, counts it and hands it to every subscriber.
func (s *FileSource) report(ev Event, trigger string) {
	attrs := []any{"source", s.name, "trigger", trigger, "generation", ev.Snapshot.Generation}
	if leaf := ev.Snapshot.Leaf; leaf != nil {
		attrs = append(attrs, "cert_sha256", leaf.CertSHA256, "not_after", leaf.NotAfter)
	}
	switch ev.Kind {
	case EventLoaded:
		s.cfg.logger.Info("material: loaded", attrs...)
	case EventRejected:
		s.cfg.logger.Warn("material: rejected; serving the last good set", append(attrs, "reason", ev.Reason)...)
	default:
		s.cfg.logger.Debug("material: unchanged", attrs...)
	}
	if s.cfg.metrics != nil {
		s.cfg.metrics.observe(s.name, ev)
	}
	for _, fn := range s.cfg.onEvent {
		fn(ev)
	}
	s.subMu.Lock()
	fns := make([]func(Event), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// rejection says why a set was rejected, naming the files at fault.
func rejection(ev Event) string {
	var msgs []string
	for _, f := range ev.Findings {
		if f.Severity == pki.SeverityError {
			msgs = append(msgs, fmt.Sprintf("%s %s: %s: %s", f.What, f.File, f.Code, f.Message))
		}
	}
	if len(msgs) == 0 {
		return strings.TrimPrefix(ev.Err.Error(), "material: ")
	}
	return strings.Join(msgs, "; ")
}

// loadError is a failed first load: its reason names the files at fault,
// and it wraps pki.ErrUnreadable or pki.ErrInvalid.
type loadError struct {
	reason string
	err    error
}

func (e *loadError) Error() string { return "material: first load: " + e.reason }
func (e *loadError) Unwrap() error { return e.err }
