package material

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"
)

// plain hides Current, as a Source implemented outside this package would.
type plain struct{ Source }

// A set read while sets are swapped is one set: the snapshot describes the
// certificate served with it, through Current and through CurrentOf's
// fallback for sources without one.
func TestCurrentIsOneSet(t *testing.T) {
	e := newEnv(t)
	check := func(src Source) string {
		set, err := CurrentOf(src)
		switch {
		case err != nil:
			return err.Error()
		case set.Cert.Leaf == nil || set.Snapshot.Leaf == nil:
			return "no leaf"
		case set.Snapshot.Leaf.CertSHA256 != fp(set.Cert.Leaf):
			return "the snapshot describes another certificate than the one served with it"
		case set.Roots == nil || len(set.Snapshot.Roots) != 1:
			return "roots missing"
		}
		return ""
	}
	stop := make(chan struct{})
	errs := make(chan string, 4)
	var wg sync.WaitGroup
	for _, src := range []Source{e.src, e.src, plain{e.src}, plain{e.src}} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if msg := check(src); msg != "" {
					errs <- msg
					return
				}
			}
		})
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

func TestStaticCurrent(t *testing.T) {
	ca := newCA(t, "CA")
	leaf := issue(t, ca, "client")
	src := NewStaticSource(leaf.TLSCertificate(), []*x509.Certificate{ca.Cert})
	set, err := CurrentOf(src)
	if err != nil {
		t.Fatal(err)
	}
	if set.Snapshot.Leaf == nil || set.Snapshot.Leaf.CertSHA256 != fp(leaf.Cert) || fp(set.Cert.Leaf) != fp(leaf.Cert) {
		t.Errorf("set %+v does not hold the leaf", set.Snapshot)
	}
	if set.Roots == nil || len(set.Snapshot.Roots) != 1 {
		t.Errorf("roots %+v", set.Snapshot.Roots)
	}
	// No certificate is an empty Cert, not an error.
	set, err = CurrentOf(plain{NewStaticSource(tls.Certificate{}, nil)})
	if err != nil || len(set.Cert.Certificate) != 0 || set.Roots != nil {
		t.Errorf("no material: %+v, %v", set, err)
	}
}

// A Snapshot is the caller's: changing it changes nothing the source
// serves or another caller sees.
func TestSnapshotIsACopy(t *testing.T) {
	e := newEnv(t)
	for _, src := range []Source{e.src, NewStaticSource(issue(t, e.ca, "static").TLSCertificate(), []*x509.Certificate{e.ca.Cert})} {
		want := src.Snapshot()
		mine := src.Snapshot()
		mine.Leaf.Subject = "changed"
		mine.Leaf.Usage[0] = "changed"
		mine.Roots[0].Subject = "changed"
		set, _ := CurrentOf(src)
		set.Snapshot.Leaf.CertSHA256 = "changed"
		if got := src.Snapshot(); got.Leaf.Subject != want.Leaf.Subject || got.Leaf.Usage[0] != want.Leaf.Usage[0] ||
			got.Roots[0].Subject != want.Roots[0].Subject || got.Leaf.CertSHA256 != want.Leaf.CertSHA256 {
			t.Errorf("%T: a caller's change reached the source: %+v", src, got)
		}
	}
}
