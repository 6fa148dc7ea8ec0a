package budget

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultTLSJitter is the upper bound of the random delay nats.go adds to
// ReconnectWait when the connection uses TLS (nats.DefaultReconnectJitterTLS
// in nats.go v1.55). It is copied, not imported, so that this package stays
// free of dependencies.
const DefaultTLSJitter = time.Second

// ErrInput is wrapped by every validation error of Compute.
var ErrInput = errors.New("invalid input")

// Input is what a rotation's budget depends on, in the words operators use.
type Input struct {
	// ReconnectWait is the clients' wait between reconnect passes
	// (nats.ReconnectWait; 2 s by default).
	ReconnectWait time.Duration
	// HandshakeTimeout is the longest a failed dial takes: the smaller of
	// the client's connect timeout (nats.Timeout) and the server's TLS
	// handshake timeout (tls { timeout }); both 2 s by default.
	HandshakeTimeout time.Duration
	// Members is how many clients are rotated (pods, processes).
	Members int
	// MaxUnavailable is how many members are restarted at once, one wave.
	MaxUnavailable int
	// RestartTime is how long one member takes to come back (process start,
	// readiness) before its first dial.
	RestartTime time.Duration
	// Pause is waited between waves, e.g. for a gate to settle.
	Pause time.Duration
	// Servers is how many server URLs a client knows, given or discovered.
	// nats.go waits once per pass over all of them. Zero means 1.
	Servers int
	// Jitter is the upper bound of nats.go's TLS reconnect jitter. Zero
	// means DefaultTLSJitter; a negative value means none.
	Jitter time.Duration
	// SLA, when positive, is the time the whole rotation must fit in.
	SLA time.Duration
}

// Estimate is the budget of a rotation: the simple model operators use, and
// the client library's worst case next to it so the gap is visible.
type Estimate struct {
	// Cycle is one reconnect cycle in the simple model:
	// ReconnectWait + HandshakeTimeout.
	Cycle time.Duration
	// WaveWindow is the time one wave is given to reconnect: 2 x Cycle.
	WaveWindow time.Duration
	// Waves is ceil(Members / MaxUnavailable).
	Waves int
	// Total is Waves x (RestartTime + WaveWindow + Pause).
	Total time.Duration

	// WorstCycle is one reconnect pass as nats.go runs it, at its longest:
	// every known server is tried once, each failing at HandshakeTimeout,
	// then the client waits ReconnectWait plus up to Jitter.
	WorstCycle time.Duration
	// WorstWaveWindow is 2 x WorstCycle.
	WorstWaveWindow time.Duration
	// WorstTotal is Waves x (RestartTime + WorstWaveWindow + Pause).
	WorstTotal time.Duration

	// SLA is copied from the input; zero means none was given.
	SLA time.Duration
	// Fits reports whether Total is within SLA; true when there is no SLA.
	Fits bool
	// WorstFits reports whether WorstTotal is within SLA; true when there
	// is no SLA.
	WorstFits bool
}

// Compute checks the input and works out the estimate.
func Compute(in Input) (Estimate, error) {
	if err := in.validate(); err != nil {
		return Estimate{}, err
	}
	servers := in.Servers
	if servers == 0 {
		servers = 1
	}
	jitter := in.Jitter
	switch {
	case jitter == 0:
		jitter = DefaultTLSJitter
	case jitter < 0:
		jitter = 0
	}
	waves := (in.Members + in.MaxUnavailable - 1) / in.MaxUnavailable

	var c calc
	e := Estimate{Waves: waves, SLA: in.SLA}
	e.Cycle = c.add(in.ReconnectWait, in.HandshakeTimeout)
	e.WaveWindow = c.mul(e.Cycle, 2)
	e.Total = c.mul(c.add(in.RestartTime, e.WaveWindow, in.Pause), waves)
	e.WorstCycle = c.add(c.mul(in.HandshakeTimeout, servers), in.ReconnectWait, jitter)
	e.WorstWaveWindow = c.mul(e.WorstCycle, 2)
	e.WorstTotal = c.mul(c.add(in.RestartTime, e.WorstWaveWindow, in.Pause), waves)
	if c.overflow {
		return Estimate{}, fmt.Errorf("budget: %w: the total does not fit in a time.Duration", ErrInput)
	}
	e.Fits = in.SLA <= 0 || e.Total <= in.SLA
	e.WorstFits = in.SLA <= 0 || e.WorstTotal <= in.SLA
	return e, nil
}

func (in Input) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("budget: %w: %s", ErrInput, fmt.Sprintf(format, args...))
	}
	switch {
	case in.Members < 1:
		return bad("members is %d, want at least 1", in.Members)
	case in.MaxUnavailable < 1:
		return bad("max-unavailable is %d, want at least 1", in.MaxUnavailable)
	case in.Servers < 0:
		return bad("servers is %d, want 0 (meaning 1) or more", in.Servers)
	case in.ReconnectWait < 0:
		return bad("reconnect wait is %s, want 0 or more", in.ReconnectWait)
	case in.HandshakeTimeout <= 0:
		return bad("handshake timeout is %s, want more than 0", in.HandshakeTimeout)
	case in.RestartTime < 0:
		return bad("restart time is %s, want 0 or more", in.RestartTime)
	case in.Pause < 0:
		return bad("pause is %s, want 0 or more", in.Pause)
	case in.SLA < 0:
		return bad("SLA is %s, want 0 (none) or more", in.SLA)
	}
	return nil
}

// calc does duration arithmetic and remembers an overflow, so that absurd
// inputs give an error instead of a negative total.
type calc struct{ overflow bool }

func (c *calc) add(ds ...time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		if sum > math.MaxInt64-d {
			c.overflow = true
			return math.MaxInt64
		}
		sum += d
	}
	return sum
}

func (c *calc) mul(d time.Duration, n int) time.Duration {
	if n != 0 && d > math.MaxInt64/time.Duration(n) {
		c.overflow = true
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// wireEstimate is Estimate as JSON: durations in milliseconds, like the
// report package, so scripts compare numbers rather than parse strings.
type wireEstimate struct {
	CycleMS           int64 `json:"cycle_ms"`
	WaveWindowMS      int64 `json:"wave_window_ms"`
	Waves             int   `json:"waves"`
	TotalMS           int64 `json:"total_ms"`
	WorstCycleMS      int64 `json:"worst_cycle_ms"`
	WorstWaveWindowMS int64 `json:"worst_wave_window_ms"`
	WorstTotalMS      int64 `json:"worst_total_ms"`
	SLAMS             int64 `json:"sla_ms,omitempty"`
	Fits              bool  `json:"fits"`
	WorstFits         bool  `json:"worst_fits"`
}

// MarshalJSON writes durations as integer milliseconds (cycle_ms, ...).
func (e Estimate) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireEstimate{
		CycleMS: e.Cycle.Milliseconds(), WaveWindowMS: e.WaveWindow.Milliseconds(),
		Waves: e.Waves, TotalMS: e.Total.Milliseconds(),
		WorstCycleMS: e.WorstCycle.Milliseconds(), WorstWaveWindowMS: e.WorstWaveWindow.Milliseconds(),
		WorstTotalMS: e.WorstTotal.Milliseconds(),
		SLAMS:        e.SLA.Milliseconds(), Fits: e.Fits, WorstFits: e.WorstFits,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Estimate) UnmarshalJSON(b []byte) error {
	var w wireEstimate
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	*e = Estimate{
		Cycle: ms(w.CycleMS), WaveWindow: ms(w.WaveWindowMS), Waves: w.Waves, Total: ms(w.TotalMS),
		WorstCycle: ms(w.WorstCycleMS), WorstWaveWindow: ms(w.WorstWaveWindowMS), WorstTotal: ms(w.WorstTotalMS),
		SLA: ms(w.SLAMS), Fits: w.Fits, WorstFits: w.WorstFits,
	}
	return nil
}
