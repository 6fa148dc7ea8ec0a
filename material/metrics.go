package material

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is one Prometheus collector for any number of sources, each
// labelled source=<name>. Register it once; a process with a hundred
// sources then has a hundred label values, not a hundred collectors whose
// names collide.
type Metrics struct {
	mu      sync.Mutex
	sources map[string]*sourceMetrics

	attempts      *prometheus.Desc
	generation    *prometheus.Desc
	leafNotAfter  *prometheus.Desc
	rootsNotAfter *prometheus.Desc
	lastLoaded    *prometheus.Desc
	rejecting     *prometheus.Desc
	unwatched     *prometheus.Desc
}

type sourceMetrics struct {
	attempts      map[EventKind]uint64
	generation    uint64
	leafNotAfter  time.Time
	rootsNotAfter time.Time
	lastLoaded    time.Time
	rejecting     bool
	unwatched     int
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns a collector with no sources; pass it to sources with
// WithMetrics and register it with a prometheus.Registerer once.
func NewMetrics() *Metrics {
	l := []string{"source"}
	return &Metrics{
		sources: map[string]*sourceMetrics{},
		attempts: prometheus.NewDesc("natscert_material_load_attempts_total",
			"Load attempts of TLS material by outcome (loaded, rejected, unchanged).",
			[]string{"source", "outcome"}, nil),
		generation: prometheus.NewDesc("natscert_material_generation",
			"Generation of the material served; grows by one on every swap.", l, nil),
		leafNotAfter: prometheus.NewDesc("natscert_material_leaf_not_after_seconds",
			"NotAfter of the served leaf certificate, in Unix seconds.", l, nil),
		rootsNotAfter: prometheus.NewDesc("natscert_material_roots_not_after_seconds",
			"Earliest NotAfter among the served roots, in Unix seconds.", l, nil),
		lastLoaded: prometheus.NewDesc("natscert_material_last_loaded_timestamp_seconds",
			"When the served material was loaded, in Unix seconds.", l, nil),
		rejecting: prometheus.NewDesc("natscert_material_rejecting",
			"1 when the last load attempt was rejected: the files on disk are not being served.", l, nil),
		unwatched: prometheus.NewDesc("natscert_material_unwatched_directories",
			"Directories of the source's files that exist but cannot be watched (inotify watches used up, permission denied): only the periodic re-check sees their changes.", l, nil),
	}
}

// Describe sends the descriptors of every metric.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.attempts, m.generation, m.leafNotAfter, m.rootsNotAfter, m.lastLoaded, m.rejecting, m.unwatched} {
		ch <- d
	}
}

// Collect sends the current values of every source.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.sources))
	for n := range m.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := m.sources[n]
		for _, k := range []EventKind{EventLoaded, EventRejected, EventUnchanged} {
			ch <- prometheus.MustNewConstMetric(m.attempts, prometheus.CounterValue, float64(s.attempts[k]), n, string(k))
		}
		ch <- prometheus.MustNewConstMetric(m.generation, prometheus.GaugeValue, float64(s.generation), n)
		if !s.leafNotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.leafNotAfter, prometheus.GaugeValue, unixSeconds(s.leafNotAfter), n)
		}
		if !s.rootsNotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.rootsNotAfter, prometheus.GaugeValue, unixSeconds(s.rootsNotAfter), n)
		}
		if !s.lastLoaded.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.lastLoaded, prometheus.GaugeValue, unixSeconds(s.lastLoaded), n)
		}
		rejecting := 0.0
		if s.rejecting {
			rejecting = 1
		}
		ch <- prometheus.MustNewConstMetric(m.rejecting, prometheus.GaugeValue, rejecting, n)
		ch <- prometheus.MustNewConstMetric(m.unwatched, prometheus.GaugeValue, float64(s.unwatched), n)
	}
}

// add claims name for a source.
func (m *Metrics) add(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.sources[name]; dup {
		return fmt.Errorf("material: metrics: source name %q is already in use", name)
	}
	m.sources[name] = &sourceMetrics{attempts: map[EventKind]uint64{}}
	return nil
}

// remove frees name: a closed source's series disappear.
func (m *Metrics) remove(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sources, name)
}

// observe records one outcome of source name.
func (m *Metrics) observe(name string, ev Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sources[name]
	if !ok {
		return
	}
	s.attempts[ev.Kind]++
	s.rejecting = ev.Kind == EventRejected
	snap := ev.Snapshot
	s.generation = snap.Generation
	s.lastLoaded = snap.LoadedAt
	s.leafNotAfter = time.Time{}
	if snap.Leaf != nil {
		s.leafNotAfter = snap.Leaf.NotAfter
	}
	s.rootsNotAfter = time.Time{}
	for _, r := range snap.Roots {
		if s.rootsNotAfter.IsZero() || r.NotAfter.Before(s.rootsNotAfter) {
			s.rootsNotAfter = r.NotAfter
		}
	}
}

// setUnwatched records how many directories of source name cannot be watched.
func (m *Metrics) setUnwatched(name string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sources[name]; ok {
		s.unwatched = n
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
