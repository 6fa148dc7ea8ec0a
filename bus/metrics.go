package bus

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is one Prometheus collector for many connections, labelled by
// connection name. Register it once; pass it to every Connect with
// WithMetrics.
type Metrics struct {
	mu    sync.Mutex
	conns map[string]*Conn

	connected, notAfter, generation             *prometheus.Desc
	attempts, failures, reconnects, disconnects *prometheus.Desc
	swaps, overlap, material                    *prometheus.Desc
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns a collector with no connections yet.
func NewMetrics() *Metrics {
	l := []string{"connection"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("natscert_bus_"+name, help, append(l, extra...), nil)
	}
	return &Metrics{
		conns:       map[string]*Conn{},
		connected:   d("connected", "1 while the connection is up."),
		notAfter:    d("presented_not_after_seconds", "NotAfter of the certificate the connection presents, Unix seconds."),
		generation:  d("material_generation", "Material generation the connection presents."),
		attempts:    d("attempts_total", "Connection attempts, every server counted."),
		failures:    d("failures_total", "Failures by reason, including failed attempts nats.go reports through no callback.", "reason"),
		reconnects:  d("reconnects_total", "Successful reconnects."),
		disconnects: d("disconnects_total", "Losses of an established connection."),
		swaps:       d("swaps_total", "Completed swaps by kind: same_server, cross_server.", "kind"),
		overlap:     d("overlap_deliveries_total", "Messages plain subscriptions got from an old connection during a swap's overlap (possible duplicates)."),
		material:    d("material_events_total", "Material loads seen: loaded or rejected.", "event"),
	}
}

func (m *Metrics) add(c *Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.conns[c.name]; dup {
		return fmt.Errorf("%w: metrics: connection name %q already registered", ErrConfig, c.name)
	}
	m.conns[c.name] = c
	return nil
}

func (m *Metrics) remove(c *Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns[c.name] == c {
		delete(m.conns, c.name)
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.connected, m.notAfter, m.generation, m.attempts, m.failures,
		m.reconnects, m.disconnects, m.swaps, m.overlap, m.material} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	conns := make([]*Conn, 0, len(m.conns))
	for _, c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, c := range conns {
		st := c.Status()
		n := c.name
		up := 0.0
		if st.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(m.connected, gauge, up, n)
		if st.Presented != nil {
			ch <- prometheus.MustNewConstMetric(m.notAfter, gauge, float64(st.Presented.NotAfter.Unix()), n)
		}
		ch <- prometheus.MustNewConstMetric(m.generation, gauge, float64(st.Generation), n)
		ch <- prometheus.MustNewConstMetric(m.attempts, counter, float64(st.Attempts), n)
		for i, r := range reasons {
			ch <- prometheus.MustNewConstMetric(m.failures, counter, float64(c.stats.failures[i].Load()), n, string(r))
		}
		ch <- prometheus.MustNewConstMetric(m.reconnects, counter, float64(st.Reconnects), n)
		ch <- prometheus.MustNewConstMetric(m.disconnects, counter, float64(st.Disconnects), n)
		ch <- prometheus.MustNewConstMetric(m.swaps, counter, float64(st.Swaps-st.CrossServerSwaps), n, "same_server")
		ch <- prometheus.MustNewConstMetric(m.swaps, counter, float64(st.CrossServerSwaps), n, "cross_server")
		ch <- prometheus.MustNewConstMetric(m.overlap, counter, float64(st.OverlapDeliveries), n)
		ch <- prometheus.MustNewConstMetric(m.material, counter, float64(st.MaterialLoaded), n, "loaded")
		ch <- prometheus.MustNewConstMetric(m.material, counter, float64(st.MaterialRejected), n, "rejected")
	}
}
