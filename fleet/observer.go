package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultSettle   = 3 * time.Second
	DefaultPageSize = 1024
	DefaultScans    = 5
	DefaultInterval = 500 * time.Millisecond
)

// Option configures an Observer.
type Option func(*config)

type config struct {
	old, new     *Material
	known        []*x509.Certificate
	serverCount  int
	serverNames  []string
	members      []Member
	memberCount  int
	byName       map[string]Member
	prints       map[string]bool // fingerprints of members expected by fingerprint
	expectedOnly bool
	strict       bool
	settle       time.Duration
	pageSize     int
	scans        int
	interval     time.Duration
}

// WithOld sets the old material: connections presenting it are "old".
func WithOld(m *Material) Option { return func(c *config) { c.old = m } }

// WithNew sets the new material: connections presenting it are "new".
func WithNew(m *Material) Option { return func(c *config) { c.new = m } }

// WithKnownLeaves adds leaf certificates the observer may classify by
// issuer when old or new material holds only CA certificates (see
// Material).
func WithKnownLeaves(certs ...*x509.Certificate) Option {
	return func(c *config) { c.known = append(c.known, certs...) }
}

// WithExpectServers requires at least n servers to answer. With a
// MonitorSource every URL must answer anyway; with a SystemSource this is
// how the observer knows a server is missing.
func WithExpectServers(n int) Option { return func(c *config) { c.serverCount = n } }

// WithExpectServerNames requires the named servers (server_name or id)
// to answer.
func WithExpectServerNames(names ...string) Option {
	return func(c *config) { c.serverNames = append(c.serverNames, names...) }
}

// WithExpectMembers requires these members to be present; a missing one
// makes the status Incomplete, and each must present new material for a
// Converged verdict.
func WithExpectMembers(ms ...Member) Option {
	return func(c *config) { c.members = append(c.members, ms...) }
}

// WithExpectMemberCount requires at least n counted connections: each
// named member once however many connections it has, each unnamed
// connection once (replicas sharing a leaf), system-account connections
// not at all. For fleets whose members are not known by name.
func WithExpectMemberCount(n int) Option { return func(c *config) { c.memberCount = n } }

// WithExpectedOnly judges only the expected members: others are counted
// and listed but cannot block convergence. A rotation uses it to gate one
// wave while later waves are still on old material.
func WithExpectedOnly() Option { return func(c *config) { c.expectedOnly = true } }

// WithStrict also refuses connections with unknown certificates or none.
func WithStrict() Option { return func(c *config) { c.strict = true } }

// WithSettle sets how long the view must stay unchanged before a verdict
// can be Converged; default DefaultSettle. Zero converges on the first
// agreeing pair of scans.
func WithSettle(d time.Duration) Option { return func(c *config) { c.settle = d } }

// WithPageSize sets the connz page size (limit); default DefaultPageSize.
func WithPageSize(n int) Option { return func(c *config) { c.pageSize = n } }

// WithScans bounds the full scans one look takes while waiting for two
// consecutive scans to agree; default DefaultScans, at least 2.
func WithScans(n int) Option { return func(c *config) { c.scans = n } }

// WithInterval sets the pause between looks in Check and Wait; default
// DefaultInterval.
func WithInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// Observer looks at a fleet through a Source and judges what it sees. It
// remembers the last view so that it can tell how long it has been
// stable; it is safe for concurrent use, but looks are serialised.
type Observer struct {
	src Source
	cfg config
	cls *classifier

	mu       sync.Mutex
	sig      [32]byte
	sigSince time.Time
	haveSig  bool
	// last is the final scan of the previous look: the next look compares
	// its first scan with it, so that a steady fleet costs one scan a look.
	last    []serverScan
	lastSig [32]byte
	lastAt  time.Time
}

// New returns an Observer of src.
func New(src Source, opts ...Option) (*Observer, error) {
	if src == nil {
		return nil, fmt.Errorf("fleet: nil source")
	}
	cfg := config{settle: DefaultSettle, pageSize: DefaultPageSize, scans: DefaultScans,
		interval: DefaultInterval, byName: map[string]Member{}, prints: map[string]bool{}}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.pageSize <= 0 {
		return nil, fmt.Errorf("fleet: page size %d: must be positive", cfg.pageSize)
	}
	if cfg.scans < 2 {
		cfg.scans = 2
	}
	if cfg.settle < 0 {
		cfg.settle = 0
	}
	for _, m := range cfg.members {
		if m.Name == "" && len(m.Fingerprints) == 0 {
			return nil, fmt.Errorf("fleet: an expected member needs a name or a fingerprint")
		}
		for _, fp := range m.Fingerprints {
			n, ok := normalizeFingerprint(fp)
			if !ok {
				return nil, fmt.Errorf("fleet: member %s: %q is not a hex sha256 fingerprint", m, fp)
			}
			if m.Name == "" {
				cfg.prints[n] = true
			}
		}
		if m.Name != "" {
			cfg.byName[m.Name] = m
		}
	}
	cls, err := newClassifier(cfg.old, cfg.new, cfg.known)
	if err != nil {
		return nil, err
	}
	return &Observer{src: src, cfg: cfg, cls: cls}, nil
}

// Poll looks once: it scans every server until two consecutive scans
// agree (at most WithScans), classifies, and judges. The previous look's
// last scan counts as the first of the pair, so an unchanged fleet costs
// one scan a look. Servers that cannot be read make the status
// Incomplete; the error is only the context's. The Status is returned
// whatever its verdict, settled or not.
func (o *Observer) Poll(ctx context.Context) (*Status, error) {
	st, _, err := o.poll(ctx)
	return st, err
}

func (o *Observer) poll(ctx context.Context) (*Status, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	opts := scanOptions{pageSize: o.cfg.pageSize, want: wantServers{count: o.cfg.serverCount, names: o.cfg.serverNames}}
	var (
		prev, cur       []serverScan
		prevSig, curSig [32]byte
		prevAt, curAt   time.Time
		agreed          bool
		n               int
	)
	cur, curSig, curAt = o.last, o.lastSig, o.lastAt
	for n < o.cfg.scans {
		prev, prevSig, prevAt = cur, curSig, curAt
		curAt = time.Now()
		cur = o.src.scan(ctx, opts)
		n++
		if err := ctx.Err(); err != nil {
			o.last = nil
			return nil, false, fmt.Errorf("fleet: poll: %w", err)
		}
		var consistent bool
		curSig, consistent = signature(cur)
		if prev != nil && consistent && curSig == prevSig && consistentAll(prev) {
			agreed = true
			break
		}
	}
	o.last, o.lastSig, o.lastAt = cur, curSig, curAt
	now := time.Now()
	st := o.build(cur, now)
	if agreed {
		// The view has been this one at least since the first scan of the
		// agreeing pair began, and since the last look if it was the same.
		if !o.haveSig || o.sig != curSig {
			o.sig, o.sigSince, o.haveSig = curSig, prevAt, true
		}
		st.StableFor = now.Sub(o.sigSince)
		st.Settled = st.StableFor >= o.cfg.settle
	} else {
		o.haveSig = false
	}
	unsettled := o.judge(st, agreed, n)
	return st, unsettled, nil
}

// Servers reads every server's identity once (varz only: name, id,
// config_load_time, tls_cert_not_after), without its connections: the
// cheap look for watching a reload take effect. A server that cannot be
// read is returned with Answered false and its Error.
func (o *Observer) Servers(ctx context.Context) ([]Server, error) {
	opts := scanOptions{varzOnly: true, want: wantServers{count: o.cfg.serverCount, names: o.cfg.serverNames}}
	scans := o.src.scan(ctx, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fleet: servers: %w", err)
	}
	out := make([]Server, 0, len(scans))
	for _, sc := range scans {
		out = append(out, serverOf(sc))
	}
	return out, nil
}

// Check gives a verdict that covers one settle window: when the view holds
// but has not been stable long enough, it keeps looking until it has, or
// until the view changes. A one-shot status command uses it.
func (o *Observer) Check(ctx context.Context) (*Status, error) {
	st, unsettled, err := o.poll(ctx)
	for err == nil && unsettled {
		stable := st.StableFor
		if o.pause(ctx) != nil {
			return st, nil
		}
		next, u, perr := o.poll(ctx)
		if perr != nil {
			return st, nil
		}
		st, unsettled = next, u
		if u && next.StableFor <= stable {
			// The view changed since the last look: it will not settle
			// within this check, so report it as it is.
			return st, nil
		}
	}
	return st, err
}

// Wait looks every interval until the verdict is Converged, or Complete
// when no material was given. progress, when not nil, is called with every
// status. When ctx ends first it returns the last status with an error
// wrapping ErrIncomplete or ErrNotConverged and the context's error.
func (o *Observer) Wait(ctx context.Context, progress func(*Status)) (*Status, error) {
	var last *Status
	for {
		st, _, err := o.poll(ctx)
		if err != nil {
			return last, o.waitErr(last, err)
		}
		last = st
		if progress != nil {
			progress(st)
		}
		if st.Verdict == Converged || st.Verdict == Complete {
			return st, nil
		}
		if err := o.pause(ctx); err != nil {
			return last, o.waitErr(last, err)
		}
	}
}

func (o *Observer) waitErr(last *Status, err error) error {
	if last == nil {
		return fmt.Errorf("fleet: wait: %w: nothing seen: %w", ErrIncomplete, err)
	}
	if last.Verdict == Incomplete {
		return fmt.Errorf("fleet: wait: %w: %w", ErrIncomplete, err)
	}
	return fmt.Errorf("fleet: wait: %w: %w", ErrNotConverged, err)
}

func (o *Observer) pause(ctx context.Context) error {
	t := time.NewTimer(o.cfg.interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// signature hashes what a settled view must keep: the servers that
// answered and every (server, cid, certificate) they listed. System
// connections are left out so the collector's own requests and reconnects
// do not unsettle it.
func signature(scans []serverScan) ([32]byte, bool) {
	h := sha256.New()
	consistent := true
	sorted := append([]serverScan(nil), scans...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].key < sorted[j].key })
	var buf [8]byte
	for _, sc := range sorted {
		h.Write([]byte(sc.key))
		h.Write([]byte(sc.varz.ID))
		if sc.err != nil {
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		if !sc.consistent {
			consistent = false
		}
		sys := sc.varz.SystemAccount
		if sys == "" {
			sys = "$SYS"
		}
		rows := make([]connInfo, 0, len(sc.rows))
		for _, r := range sc.rows {
			if r.Account != sys {
				rows = append(rows, r)
			}
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Cid < rows[j].Cid })
		for _, r := range rows {
			binary.BigEndian.PutUint64(buf[:], r.Cid)
			h.Write(buf[:])
			if len(r.Certs) > 0 {
				h.Write([]byte(r.Certs[0].Cert))
			}
			h.Write([]byte{'|'})
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, consistent
}

func consistentAll(scans []serverScan) bool {
	for _, sc := range scans {
		if sc.err == nil && !sc.consistent {
			return false
		}
	}
	return true
}
