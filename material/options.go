package material

import (
	"log/slog"
	"time"

	"github.com/natscert/natscert/pki"
)

// Defaults of a FileSource.
const (
	DefaultRecheckInterval = time.Minute
	DefaultDebounce        = 25 * time.Millisecond
	DefaultClockSkew       = pki.DefaultClockSkew
)

// FileOption adjusts a FileSource.
type FileOption func(*fileConfig)

type fileConfig struct {
	recheck     time.Duration
	debounce    time.Duration
	logger      *slog.Logger
	role        pki.Role
	skew        time.Duration
	waitForFile bool
	metrics     *Metrics
	name        string
	onEvent     []func(Event)
}

func defaultFileConfig() fileConfig {
	return fileConfig{
		recheck:  DefaultRecheckInterval,
		debounce: DefaultDebounce,
		logger:   slog.Default(),
		role:     pki.RoleClient,
		skew:     DefaultClockSkew,
	}
}

// WithRecheckInterval sets how often the files are re-read even without a
// file-system event, in case one was missed (default one minute). Zero or
// less turns the re-check off. It is the only trigger for files in a
// directory that cannot be watched (see Metrics' unwatched directories).
func WithRecheckInterval(d time.Duration) FileOption {
	return func(c *fileConfig) { c.recheck = d }
}

// WithDebounce sets how long a burst of file-system events must be quiet
// before the files are read (default 25 ms). Writers that replace the cert
// and the key one after the other usually finish inside it; a set read in
// between is rejected and re-read on the next event.
func WithDebounce(d time.Duration) FileOption {
	return func(c *fileConfig) {
		if d >= 0 {
			c.debounce = d
		}
	}
}

// WithLogger sets the logger outcomes are logged to (default slog.Default()).
// Loaded sets are logged at info, rejected ones at warn, unchanged at debug.
func WithLogger(l *slog.Logger) FileOption {
	return func(c *fileConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithRole sets the role the certificate must fit (default pki.RoleClient).
func WithRole(r pki.Role) FileOption {
	return func(c *fileConfig) {
		if r != "" {
			c.role = r
		}
	}
}

// WithClockSkew tolerates clocks that differ by up to d when checking
// validity windows (default one minute).
func WithClockSkew(d time.Duration) FileOption {
	return func(c *fileConfig) {
		if d >= 0 {
			c.skew = d
		}
	}
}

// WithWaitForFiles makes the first load wait until the files exist and
// validate, bounded by the context given to NewFileSource, instead of
// failing at once. Useful when a sidecar or the kubelet writes them late.
func WithWaitForFiles() FileOption {
	return func(c *fileConfig) { c.waitForFile = true }
}

// WithMetrics reports the source's outcomes to m under the label
// source=name, which also names the source in logs. The name must be
// unique among the open sources of m; Close frees it.
func WithMetrics(m *Metrics, name string) FileOption {
	return func(c *fileConfig) { c.metrics, c.name = m, name }
}

// WithOnEvent calls fn for every outcome, the first load included (which
// Subscribe, called after NewFileSource returns, cannot see). fn runs on
// the goroutine that loads and must not block for long.
func WithOnEvent(fn func(Event)) FileOption {
	return func(c *fileConfig) {
		if fn != nil {
			c.onEvent = append(c.onEvent, fn)
		}
	}
}
