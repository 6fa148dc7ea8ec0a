package material

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// One collector, one registry, a hundred sources: no collisions, one
// series per source and metric.
func TestMetricsManySources(t *testing.T) {
	const n = 100
	dir := t.TempDir()
	ca := newCA(t, "CA")
	leaf := issue(t, ca, "client")
	files := Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Roots: filepath.Join(dir, "ca.pem")}
	if err := leaf.WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	writeFile(t, files.Roots, ca.CertPEM)

	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	var srcs []*FileSource
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	for i := range n {
		s, err := NewFileSource(context.Background(), files, WithRecheckInterval(0), WithLogger(quiet), WithMetrics(m, fmt.Sprintf("src-%03d", i)))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	hubs.mu.Lock()
	users := hubs.users
	hubs.mu.Unlock()
	if users != n {
		t.Errorf("%d sources share the watcher, want %d", users, n)
	}
	if _, err := NewFileSource(context.Background(), files, WithLogger(quiet), WithMetrics(m, "src-000")); err == nil {
		t.Fatal("a second source with the same name was accepted")
	}
	if err := srcs[0].Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	perSource := map[string]int{}
	for _, mf := range mfs {
		sources := map[string]bool{}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "source" {
					sources[l.GetValue()] = true
				}
			}
		}
		perSource[mf.GetName()] = len(sources)
	}
	for _, name := range []string{
		"natscert_material_load_attempts_total", "natscert_material_generation",
		"natscert_material_leaf_not_after_seconds", "natscert_material_roots_not_after_seconds",
		"natscert_material_last_loaded_timestamp_seconds", "natscert_material_rejecting",
		"natscert_material_unwatched_directories",
	} {
		if perSource[name] != n {
			t.Errorf("%s has %d sources, want %d", name, perSource[name], n)
		}
	}
	attempts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "natscert_material_load_attempts_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			var source, outcome string
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "source":
					source = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			if source == "src-000" {
				attempts[outcome] = metric.GetCounter().GetValue()
			}
		}
	}
	if want := map[string]float64{"loaded": 1, "rejected": 0, "unchanged": 1}; fmt.Sprint(attempts) != fmt.Sprint(want) {
		t.Errorf("attempts of src-000: %v, want %v", attempts, want)
	}

	// Close frees the name and removes the series.
	srcs[0].Close()
	if c := countSeries(t, reg, "natscert_material_generation"); c != n-1 {
		t.Errorf("%d generation series after a close, want %d", c, n-1)
	}
	s, err := NewFileSource(context.Background(), files, WithLogger(quiet), WithMetrics(m, "src-000"))
	if err != nil {
		t.Fatalf("name not freed by Close: %v", err)
	}
	srcs[0] = s
}

func countSeries(t *testing.T, g prometheus.Gatherer, family string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == family {
			return len(mf.GetMetric())
		}
	}
	return 0
}
