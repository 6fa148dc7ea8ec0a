package drill

import (
	"errors"
	"fmt"
	"time"
)

// Strategy is how the simulated members pick up new material.
type Strategy string

// The strategies a drill rehearses.
const (
	// StrategyRestart is today's approach: members load their material
	// once at start-up and are restarted, wave by wave, on the new files.
	// It promises that no member is left on old material, that the
	// servers' certificates are renewed and that the proof passes; the
	// messages and requests lost while members are down are measured and
	// reported, not promised away.
	StrategyRestart Strategy = "restart"
	// StrategyReconnect keeps members running: a file source sees the new
	// files and the connection re-dials with them (jittered
	// ForceReconnect). It promises what restart promises; the stream lost
	// during each reconnect is measured and reported.
	StrategyReconnect Strategy = "reconnect"
	// StrategySwap is make-before-break: a second connection is dialled
	// with the new material, subscriptions move to it, and the old one is
	// drained. On top of what the others promise, it promises zero lost
	// messages and zero failed requests.
	StrategySwap Strategy = "swap"
)

// Strategies lists every strategy, in the order --compare runs them.
var Strategies = []Strategy{StrategyRestart, StrategyReconnect, StrategySwap}

// ParseStrategy checks a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	for _, k := range Strategies {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("drill: unknown strategy %q (want restart, reconnect or swap)", s)
}

// Config describes a drill. The zero value of every field means its default.
type Config struct {
	// Strategy is how members pick up new material; default swap.
	Strategy Strategy
	// Clients is the number of simulated members; default 100.
	Clients int
	// Servers is the number of embedded servers; default 3.
	Servers int
	// Rate is the fan-out messages delivered per second across all members
	// (the publisher sends Rate/Clients numbered messages per second, each
	// delivered to every member); default 2,000, at least 1 message
	// published per second.
	Rate int
	// RequestRate is the requests per second sent to the members' queue
	// group; default 200.
	RequestRate int
	// RequestTimeout is how long a request waits for its reply before it
	// counts as failed; default 2 s.
	RequestTimeout time.Duration
	// Waves is the number of waves the members are moved in; default 4.
	Waves int
	// Steady is how long traffic runs before the rotation starts and again
	// after it ends, so that both edges of the rotation are measured under
	// load; default 15 s.
	Steady time.Duration
	// Pause is waited between waves, the time an operator lets a wave
	// settle; default 5 s.
	Pause time.Duration
	// Processes runs members as worker processes instead of goroutines.
	Processes bool
	// WorkerPath is the worker binary for Processes; found or built when
	// empty.
	WorkerPath string
	// Seed decides the order the members are taken in, and so which of
	// them share a wave; default 1. The reconnect jitter of package bus is
	// not seeded.
	Seed int64
	// Dir is where certificates, server configuration and member files are
	// written; a temporary directory, removed afterwards, when empty.
	Dir string
	// Progress receives one line per event; nil: none. Use NewProgress for
	// a live display on a terminal.
	Progress Progress
}

// Defaults of a drill.
const (
	DefaultClients        = 100
	DefaultServers        = 3
	DefaultRate           = 2000
	DefaultRequestRate    = 200
	DefaultRequestTimeout = 2 * time.Second
	DefaultWaves          = 4
	DefaultSteady         = 15 * time.Second
	DefaultPause          = 5 * time.Second
)

// withDefaults returns c with every zero field set to its default, or an
// error for values that cannot run.
func (c Config) withDefaults() (Config, error) {
	if c.Strategy == "" {
		c.Strategy = StrategySwap
	}
	if _, err := ParseStrategy(string(c.Strategy)); err != nil {
		return c, err
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Clients, DefaultClients)
	def(&c.Servers, DefaultServers)
	def(&c.Rate, DefaultRate)
	def(&c.RequestRate, DefaultRequestRate)
	def(&c.Waves, DefaultWaves)
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Steady == 0 {
		c.Steady = DefaultSteady
	}
	if c.Pause == 0 {
		c.Pause = DefaultPause
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case c.Clients < 1:
		return c, errors.New("drill: clients must be at least 1")
	case c.Servers < 1:
		return c, errors.New("drill: servers must be at least 1")
	case c.Rate < 0 || c.RequestRate < 0:
		return c, errors.New("drill: rates must not be negative")
	case c.Waves < 1:
		return c, errors.New("drill: waves must be at least 1")
	case c.Steady < 0 || c.Pause < 0 || c.RequestTimeout < 0:
		return c, errors.New("drill: durations must not be negative")
	}
	c.Waves = min(c.Waves, c.Clients) // a wave holds at least one member
	return c, nil
}

// publishInterval is the time between two fan-out messages: Rate is what
// the members receive in total, so the publisher sends Rate/Clients per
// second, and at least one per second so that every member always has
// messages in flight.
func (c Config) publishInterval() time.Duration {
	per := float64(c.Rate) / float64(c.Clients)
	if per < 1 {
		per = 1
	}
	return time.Duration(float64(time.Second) / per)
}
