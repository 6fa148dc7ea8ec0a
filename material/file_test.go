package material

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// pause lets a writer's first step be seen on its own: longer than the
// debounce, so the source reads the half-done state. It shapes the
// scenario; nothing asserts on it.
const pause = 150 * time.Millisecond

func TestFirstLoad(t *testing.T) {
	e := newEnv(t)
	snap := e.src.Snapshot()
	if snap.Generation != 1 {
		t.Errorf("generation %d, want 1", snap.Generation)
	}
	if len(snap.Roots) != 1 || snap.Roots[0].CertSHA256 != fp(e.ca.Cert) {
		t.Errorf("roots %+v, want the CA", snap.Roots)
	}
	if snap.CertFile != e.files.Cert || snap.KeyFile != e.files.Key || snap.RootsFile != e.files.Roots {
		t.Errorf("files %+v", snap)
	}
	if snap.LoadedAt.IsZero() {
		t.Error("no LoadedAt")
	}
	pool, err := e.src.RootCAs()
	if err != nil || pool == nil {
		t.Fatalf("roots %v, %v", pool, err)
	}
	evs := e.rec.all()
	if len(evs) != 1 || evs[0].Kind != EventLoaded || evs[0].Reason != "start" {
		t.Errorf("events %+v, want one loaded at start", evs)
	}
}

func TestFirstLoadFails(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	other := newCA(t, "Other CA")
	good := issue(t, ca, "client")
	expired := issue(t, ca, "old", pki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, b)
		return p
	}
	cert, key := write("cert.pem", good.CertPEM), write("key.pem", good.KeyPEM)
	for _, tc := range []struct {
		name  string
		files Files
		is    error
		code  string
	}{
		{"missing cert", Files{Cert: filepath.Join(dir, "nope.pem"), Key: key}, pki.ErrUnreadable, ""},
		{"missing roots", Files{Cert: cert, Key: key, Roots: filepath.Join(dir, "nope", "ca.pem")}, pki.ErrUnreadable, ""},
		{"garbage cert", Files{Cert: write("garbage.pem", []byte("not a certificate")), Key: key}, pki.ErrInvalid, pki.CodeCertUnparsable},
		{"mismatched key", Files{Cert: cert, Key: write("other-key.pem", expired.KeyPEM)}, pki.ErrInvalid, pki.CodeKeyMismatch},
		{"expired", Files{Cert: write("expired.pem", expired.CertPEM), Key: write("expired-key.pem", expired.KeyPEM)}, pki.ErrInvalid, pki.CodeExpired},
		{"issuer mismatch", Files{Cert: cert, Key: key, Issuer: write("other.pem", other.CertPEM)}, pki.ErrInvalid, pki.CodeUnknownIssuer},
		{"roots not a CA", Files{Cert: cert, Key: key, Roots: cert}, pki.ErrInvalid, pki.CodeBundleNotCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			src, err := NewFileSource(context.Background(), tc.files, WithLogger(quiet), WithOnEvent(rec.add))
			if err == nil {
				src.Close()
				t.Fatal("loaded")
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			if !strings.HasPrefix(err.Error(), "material: ") {
				t.Errorf("error %q lacks the material: prefix", err)
			}
			if tc.code != "" && !rec.has(EventRejected, hasCode(tc.code)) {
				t.Errorf("no rejection with %s in %+v", tc.code, rec.all())
			}
		})
	}
}

func TestFilesCheck(t *testing.T) {
	for _, f := range []Files{{}, {Cert: "c"}, {Key: "k"}, {Roots: "r", Issuer: "i"}} {
		if _, err := NewFileSource(context.Background(), f); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

func TestRootsOnly(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	roots := filepath.Join(dir, "ca.pem")
	writeFile(t, roots, ca.CertPEM)
	src, err := NewFileSource(context.Background(), Files{Roots: roots}, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Cert(); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Cert error %v, want ErrNoCertificate", err)
	}
	if pool, err := src.RootCAs(); err != nil || pool == nil {
		t.Errorf("roots %v, %v", pool, err)
	}
}

func TestRenameOver(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		next := issue(t, e.ca, "client next")
		e.writeLeaf(next)
		e.waitServes(next)
		if g := e.src.Snapshot().Generation; g != uint64(i+2) {
			t.Fatalf("generation %d, want %d", g, i+2)
		}
	}
}

// kubeletWrite updates dir the way the kubelet updates a Secret volume:
// the files go to a new timestamped directory, a temporary ..data symlink
// to it is renamed over ..data, the visible names are symlinks into
// ..data, and the old directory is removed.
func kubeletWrite(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := "..2026_11_30_" + strings.ReplaceAll(time.Now().Format("15_04_05.000000000"), ".", "_")
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKubeletSecretVolume(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA 1")
	rec := &recorder{}
	good := map[string]bool{}
	write := func(ca *pki.CA, l *pki.Leaf) {
		good[fp(l.Cert)] = true
		kubeletWrite(t, dir, map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM, "ca.crt": ca.CertPEM})
	}
	first := issue(t, ca, "client 1")
	write(ca, first)
	files := Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), Roots: filepath.Join(dir, "ca.crt")}
	src, err := NewFileSource(context.Background(), files, WithRecheckInterval(0), WithLogger(quiet), WithOnEvent(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Several swaps: the watch must survive each old directory's removal.
	for i := range 3 {
		ca2 := newCA(t, "CA next")
		next := issue(t, ca2, "client next")
		write(ca2, next)
		eventually(t, "the new leaf", func() bool {
			c, _ := src.Cert()
			return fp(c.Leaf) == fp(next.Cert)
		})
		snap := src.Snapshot()
		if len(snap.Roots) != 1 || snap.Roots[0].CertSHA256 != fp(ca2.Cert) {
			t.Fatalf("swap %d: roots %+v, want the new CA", i, snap.Roots)
		}
		if snap.Generation != uint64(i+2) {
			t.Fatalf("swap %d: generation %d", i, snap.Generation)
		}
	}
	for _, ev := range rec.all() {
		if ev.Kind == EventLoaded && !good[ev.Snapshot.Leaf.CertSHA256] {
			t.Errorf("loaded a leaf never written: %+v", ev.Snapshot.Leaf)
		}
	}
}

func TestTruncateThenWrite(t *testing.T) {
	e := newEnv(t)
	old, _ := e.src.Cert()
	next := issue(t, e.ca, "client next")
	e.good[fp(next.Cert)] = true
	// Rewrite both files in place, each in two halves with a pause, as a
	// naive writer (or cp) does: truncate, write, write.
	inPlace := func(path string, data []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		half := len(data) / 2
		if _, err := f.Write(data[:half]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(pause)
		if _, err := f.Write(data[half:]); err != nil {
			t.Fatal(err)
		}
	}
	inPlace(e.files.Key, next.KeyPEM)
	// The half-written key was read and rejected (or, on a slow machine,
	// the whole new key with the old cert); the old set stayed.
	e.waitEvent("a rejected half-written key", EventRejected, func(ev Event) bool {
		return hasCode(pki.CodeKeyUnparsable)(ev) || hasCode(pki.CodeKeyMismatch)(ev)
	})
	if fp(old.Leaf) != e.served() {
		t.Fatal("a half-written set replaced the good one")
	}
	inPlace(e.files.Cert, next.CertPEM)
	e.waitServes(next)
}

func TestKeyBeforeCert(t *testing.T) {
	testOneThenOther(t, true)
}

func TestCertBeforeKey(t *testing.T) {
	testOneThenOther(t, false)
}

func testOneThenOther(t *testing.T, keyFirst bool) {
	e := newEnv(t)
	first, _ := e.src.Cert()
	next := issue(t, e.ca, "client next")
	e.good[fp(next.Cert)] = true
	a, b := e.files.Cert, e.files.Key
	da, db := next.CertPEM, next.KeyPEM
	if keyFirst {
		a, b, da, db = b, a, db, da
	}
	writeFile(t, a, da)
	e.waitEvent("a rejected mismatched pair", EventRejected, hasCode(pki.CodeKeyMismatch))
	time.Sleep(pause)
	if e.served() != fp(first.Leaf) {
		t.Fatal("a mismatched pair replaced the good set")
	}
	writeFile(t, b, db)
	e.waitServes(next)
}

func TestGarbage(t *testing.T) {
	e := newEnv(t)
	first, _ := e.src.Cert()
	writeFile(t, e.files.Cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"))
	e.waitEvent("garbage rejected", EventRejected, hasCode(pki.CodeCertUnparsable))
	if e.served() != fp(first.Leaf) {
		t.Fatal("garbage replaced the good set")
	}
	writeFile(t, e.files.Key, []byte{0, 1, 2, 3})
	e.waitEvent("garbage key rejected", EventRejected, hasCode(pki.CodeKeyUnparsable))
	next := issue(t, e.ca, "client next")
	e.writeLeaf(next)
	e.waitServes(next)
}

func TestExpired(t *testing.T) {
	e := newEnv(t)
	first, _ := e.src.Cert()
	expired := issue(t, e.ca, "expired", pki.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
	if err := expired.WriteFiles(e.files.Cert, e.files.Key); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("expired rejected", EventRejected, hasCode(pki.CodeExpired))
	if err := e.src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.served() != fp(first.Leaf) {
		t.Fatal("an expired leaf replaced the good set")
	}
}

func TestIssuerMismatch(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := newCA(t, "CA 1"), newCA(t, "CA 2")
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"),
		Issuer: filepath.Join(dir, "issuer", "ca.pem")}
	if err := os.Mkdir(filepath.Dir(files.Issuer), 0o755); err != nil {
		t.Fatal(err)
	}
	first := issue(t, ca1, "client 1")
	if err := first.WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	writeFile(t, files.Issuer, ca1.CertPEM)
	rec := &recorder{}
	src, err := NewFileSource(context.Background(), files, WithRecheckInterval(0), WithLogger(quiet), WithOnEvent(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Snapshot().IssuerFile != files.Issuer {
		t.Errorf("issuer file %q", src.Snapshot().IssuerFile)
	}
	next := issue(t, ca2, "client 2")
	if err := next.WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unknown issuer rejected", func() bool { return rec.has(EventRejected, hasCode(pki.CodeUnknownIssuer)) })
	if c, _ := src.Cert(); fp(c.Leaf) != fp(first.Cert) {
		t.Fatal("a leaf of an unknown issuer replaced the good set")
	}
	// The issuer bundle, in another directory, gains CA 2: now it loads.
	bundle, err := pki.Bundle(ca1.CertPEM, ca2.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, files.Issuer, bundle)
	eventually(t, "the new leaf", func() bool {
		c, _ := src.Cert()
		return fp(c.Leaf) == fp(next.Cert)
	})
}

func TestRootsReplacedByGarbage(t *testing.T) {
	e := newEnv(t)
	pool, _ := e.src.RootCAs()
	writeFile(t, e.files.Roots, []byte("garbage"))
	e.waitEvent("garbage roots rejected", EventRejected, hasCode(pki.CodeBundleUnparsable))
	leaf := issue(t, e.ca, "leaf, not a CA")
	writeFile(t, e.files.Roots, leaf.CertPEM)
	e.waitEvent("leaf roots rejected", EventRejected, hasCode(pki.CodeBundleNotCA))
	if now, _ := e.src.RootCAs(); now != pool {
		t.Fatal("bad roots replaced the good pool")
	}
	if g := e.src.Snapshot().Generation; g != 1 {
		t.Fatalf("generation %d after rejections", g)
	}
	ca2 := newCA(t, "CA 2")
	bundle, _ := pki.Bundle(e.ca.CertPEM, ca2.CertPEM)
	writeFile(t, e.files.Roots, bundle)
	eventually(t, "the new roots", func() bool { return len(e.src.Snapshot().Roots) == 2 })
	if now, _ := e.src.RootCAs(); now == pool {
		t.Fatal("pool not swapped")
	}
}

func TestDeletedThenRecreated(t *testing.T) {
	e := newEnv(t)
	first, _ := e.src.Cert()
	mustRemove(t, e.files.Cert, e.files.Key)
	e.waitEvent("missing files rejected", EventRejected, func(ev Event) bool { return errors.Is(ev.Err, pki.ErrUnreadable) })
	if e.served() != fp(first.Leaf) {
		t.Fatal("lost the good set")
	}
	next := issue(t, e.ca, "client next")
	e.writeLeaf(next)
	e.waitServes(next)
}

func TestDirectoryReplaced(t *testing.T) {
	e := newEnv(t)
	// The whole directory goes away and comes back: the watch must follow.
	if err := os.RemoveAll(e.dir); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("missing files rejected", EventRejected, func(ev Event) bool { return errors.Is(ev.Err, pki.ErrUnreadable) })
	if err := os.Mkdir(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	next := issue(t, e.ca, "client next")
	writeFile(t, e.files.Roots, e.ca.CertPEM)
	e.writeLeaf(next)
	e.waitServes(next)
}

func TestWaitForFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Roots: filepath.Join(dir, "ca.pem")}
	ca := newCA(t, "CA")
	leaf := issue(t, ca, "client")
	rec := &recorder{}
	type result struct {
		src *FileSource
		err error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	go func() {
		src, err := NewFileSource(ctx, files, WithWaitForFiles(), WithRecheckInterval(0), WithLogger(quiet), WithOnEvent(rec.add))
		got <- result{src, err}
	}()
	eventually(t, "a rejection while waiting", func() bool { return rec.has(EventRejected, nil) })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The key first, alone for a while: the source keeps waiting.
	writeFile(t, files.Key, leaf.KeyPEM)
	time.Sleep(pause)
	writeFile(t, files.Roots, ca.CertPEM)
	writeFile(t, files.Cert, leaf.CertPEM)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.src.Close()
	if c, _ := r.src.Cert(); fp(c.Leaf) != fp(leaf.Cert) {
		t.Fatal("wrong leaf")
	}
	// Waiting reports each distinct rejection once, not every poll.
	seen := map[string]int{}
	for _, ev := range rec.all() {
		if ev.Kind == EventRejected {
			seen[ev.Reason]++
		}
	}
	for reason, n := range seen {
		if n > 1 {
			t.Errorf("rejection reported %d times in a row: %s", n, reason)
		}
	}
	// And the source watches the directory that appeared late.
	next := issue(t, ca, "client next")
	if err := next.WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the next leaf", func() bool {
		c, _ := r.src.Cert()
		return fp(c.Leaf) == fp(next.Cert)
	})
}

func TestWaitForFilesGivesUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := NewFileSource(ctx, Files{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}, WithWaitForFiles(), WithLogger(quiet))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, pki.ErrUnreadable) {
		t.Fatalf("error %v, want a deadline and an unreadable file", err)
	}
}

// ctx bounds the wait for a first set only: good files load even when it
// has already ended, every time (the choice used to be a coin toss).
func TestDoneContextGoodFiles(t *testing.T) {
	dir := t.TempDir()
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	if err := issue(t, newCA(t, "CA"), "client").WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, opts := range [][]FileOption{nil, {WithWaitForFiles()}} {
		for range 20 {
			src, err := NewFileSource(ctx, files, append(opts, WithLogger(quiet))...)
			if err != nil {
				t.Fatalf("good files, done context: %v", err)
			}
			if _, err := src.Cert(); err != nil {
				t.Fatal(err)
			}
			src.Close()
		}
	}
}

func TestUnchanged(t *testing.T) {
	e := newEnv(t)
	if err := e.src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !e.rec.has(EventUnchanged, func(ev Event) bool { return ev.Reason == "refresh" }) {
		t.Fatalf("no unchanged event after refresh: %+v", e.rec.all())
	}
	// The same bytes renamed over the file: unchanged, same generation.
	b, err := os.ReadFile(e.files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.files.Cert, b)
	e.waitEvent("unchanged after a rewrite", EventUnchanged, func(ev Event) bool { return ev.Reason == "change" })
	if g := e.src.Snapshot().Generation; g != 1 {
		t.Fatalf("generation %d, want 1", g)
	}
	for _, ev := range e.rec.all() {
		if ev.Kind == EventLoaded && ev.Reason != "start" {
			t.Errorf("unexpected load: %+v", ev)
		}
	}
}

// A file outside every watched directory (a symlink to elsewhere) changes
// without an event the source sees: the slow re-check picks it up.
func TestRecheck(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	ca := newCA(t, "CA")
	first, next := issue(t, ca, "client 1"), issue(t, ca, "client 2")
	real := Files{Cert: filepath.Join(elsewhere, "cert.pem"), Key: filepath.Join(elsewhere, "key.pem")}
	if err := first.WriteFiles(real.Cert, real.Key); err != nil {
		t.Fatal(err)
	}
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	for _, l := range [][2]string{{real.Cert, files.Cert}, {real.Key, files.Key}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	src, err := NewFileSource(context.Background(), files, WithRecheckInterval(50*time.Millisecond), WithLogger(quiet), WithOnEvent(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := next.WriteFiles(real.Cert, real.Key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the re-check to load the next leaf", func() bool {
		c, _ := src.Cert()
		return fp(c.Leaf) == fp(next.Cert)
	})
	if !rec.has(EventLoaded, func(ev Event) bool { return ev.Reason == "recheck" }) {
		t.Errorf("not loaded by the re-check: %+v", rec.all())
	}
}

func TestSubscribe(t *testing.T) {
	e := newEnv(t)
	got := make(chan Event, 16)
	cancel := e.src.Subscribe(func(ev Event) { got <- ev })
	if err := e.src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := <-got; ev.Kind != EventUnchanged {
		t.Fatalf("event %+v", ev)
	}
	cancel()
	if err := e.src.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		t.Fatalf("event after cancel: %+v", ev)
	default:
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	if err := e.src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.src.Refresh(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("refresh after close: %v", err)
	}
	if _, err := e.src.Cert(); err != nil {
		t.Fatalf("Cert after close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.src.Refresh(ctx); err == nil {
		t.Fatal("refresh with a done context succeeded")
	}
}

// Readers calling Cert on every dial while sets are swapped see only whole,
// good sets: a certificate always with its own key.
func TestConcurrentReaders(t *testing.T) {
	e := newEnv(t)
	stop := make(chan struct{})
	errs := make(chan string, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := e.src.Cert()
				if err != nil {
					errs <- err.Error()
					return
				}
				if !pki.PublicKeysEqual(c.Leaf.PublicKey, c.PrivateKey.(crypto.Signer).Public()) {
					errs <- "a certificate served with another's key"
					return
				}
				if _, err := e.src.RootCAs(); err != nil {
					errs <- err.Error()
					return
				}
				_ = e.src.Snapshot()
			}
		}()
	}
	for range 5 {
		next := issue(t, e.ca, "client next")
		e.writeLeaf(next)
		e.waitServes(next)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func TestRoleAndClockSkew(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	write := func(l *pki.Leaf) Files {
		f := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
		if err := l.WriteFiles(f.Cert, f.Key); err != nil {
			t.Fatal(err)
		}
		return f
	}
	load := func(f Files, opts ...FileOption) error {
		src, err := NewFileSource(context.Background(), f, append(opts, WithLogger(quiet))...)
		if err == nil {
			src.Close()
		}
		return err
	}
	server, err := ca.Issue("server", pki.RoleServer, pki.WithDNSNames("nats"))
	if err != nil {
		t.Fatal(err)
	}
	f := write(server)
	if err := load(f); !errors.Is(err, pki.ErrInvalid) || !strings.Contains(err.Error(), pki.CodeWrongUsage) {
		t.Errorf("server leaf as a client: %v", err)
	}
	if err := load(f, WithRole(pki.RoleServer)); err != nil {
		t.Errorf("server leaf as a server: %v", err)
	}
	// Issued by a CA whose clock runs 30 s ahead.
	early := issue(t, ca, "early", pki.WithValidity(time.Now().Add(30*time.Second), time.Now().Add(time.Hour)))
	f = write(early)
	if err := load(f); err != nil {
		t.Errorf("a leaf valid in 30 s, default skew: %v", err)
	}
	if err := load(f, WithClockSkew(0)); !errors.Is(err, pki.ErrInvalid) || !strings.Contains(err.Error(), pki.CodeNotYetValid) {
		t.Errorf("a leaf valid in 30 s, no skew: %v", err)
	}
}
