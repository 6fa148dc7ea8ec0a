package material

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// BenchmarkDetectionLatency measures, over many swaps, the time from the
// rename of a new key and certificate over the old ones to the new set
// being served, and reports its p50 and p99. The debounce is part of it.
//
//	go test -run='^$' -bench=DetectionLatency -benchtime=400x ./material
func BenchmarkDetectionLatency(b *testing.B) {
	for _, debounce := range []time.Duration{DefaultDebounce, 5 * time.Millisecond} {
		b.Run("debounce="+debounce.String(), func(b *testing.B) {
			benchmarkDetection(b, debounce)
		})
	}
}

func benchmarkDetection(b *testing.B, debounce time.Duration) {
	dir := b.TempDir()
	ca := newCA(b, "CA")
	leaves := []*pki.Leaf{issue(b, ca, "a"), issue(b, ca, "b")}
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	if err := leaves[0].WriteFiles(files.Cert, files.Key); err != nil {
		b.Fatal(err)
	}
	src, err := NewFileSource(context.Background(), files, WithDebounce(debounce), WithRecheckInterval(0), WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	loaded := make(chan string, 16)
	defer src.Subscribe(func(ev Event) {
		if ev.Kind == EventLoaded {
			loaded <- ev.Snapshot.Leaf.CertSHA256
		}
	})()
	// Temporary files are written and synced outside the measurement; the
	// clock starts at the first rename.
	stage := func(path string, data []byte) string {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return tmp
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		next := leaves[(i+1)%2]
		keyTmp, certTmp := stage(files.Key, next.KeyPEM), stage(files.Cert, next.CertPEM)
		want := fp(next.Cert)
		b.StartTimer()
		start := time.Now()
		if err := os.Rename(keyTmp, files.Key); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(certTmp, files.Cert); err != nil {
			b.Fatal(err)
		}
		timeout := time.After(waitFor)
		for done := false; !done; {
			select {
			case got := <-loaded:
				done = got == want
			case <-timeout:
				b.Fatalf("swap %d not served", i)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}

// BenchmarkCert is the cost of the nats.go callback on every dial.
//
//	go test -run='^$' -bench='Cert$|CertParallel' ./material
func BenchmarkCert(b *testing.B) {
	src := benchSource(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.Cert(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCertParallel calls Cert from every P at once: no lock to fight
// over.
func BenchmarkCertParallel(b *testing.B) {
	src := benchSource(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := src.Cert(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRootCAs is the cost of the other callback.
func BenchmarkRootCAs(b *testing.B) {
	src := benchSource(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.RootCAs(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate is the cost of checking one new set (ECDSA P-256
// leaf, key, roots and issuer).
func BenchmarkValidate(b *testing.B) {
	ca := newCA(b, "CA")
	leaf := issue(b, ca, "client")
	c := pki.SetPEM{Cert: leaf.CertPEM, Key: leaf.KeyPEM, Roots: ca.CertPEM, Issuer: ca.CertPEM}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := validate(c, pki.CheckOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSource(b *testing.B) *FileSource {
	b.Helper()
	dir := b.TempDir()
	ca := newCA(b, "CA")
	leaf := issue(b, ca, "client")
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Roots: filepath.Join(dir, "ca.pem")}
	if err := leaf.WriteFiles(files.Cert, files.Key); err != nil {
		b.Fatal(err)
	}
	writeFile(b, files.Roots, ca.CertPEM)
	src, err := NewFileSource(context.Background(), files, WithRecheckInterval(0), WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	return src
}
