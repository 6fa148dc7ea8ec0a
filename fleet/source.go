package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A Source reads the servers' own view: per server its /varz and every
// page of its /connz?auth=true. MonitorSource and SystemSource are the two
// implementations.
type Source interface {
	// scan reads every server once; a server that cannot be read is
	// returned with its error, never dropped.
	scan(ctx context.Context, o scanOptions) []serverScan
	// expected names the servers the source itself requires (the URLs
	// given); nil when the caller must say (WithExpectServers).
	expected() []string
}

// scanOptions are what the observer asks of a source.
type scanOptions struct {
	pageSize int
	want     wantServers // servers that must answer (system path)
	varzOnly bool        // identity only: no connz pages
}

// serverScan is one server's answer to one scan.
type serverScan struct {
	key  string // URL for HTTP, server id for the system path
	varz varz
	rows []connInfo
	// consistent is false when the pages disagreed: the total moved or a
	// connection appeared twice, so a connection may have been missed.
	consistent bool
	err        error
}

// varz holds the fields of nats-server's /varz that fleet reads.
type varz struct {
	ID              string    `json:"server_id"`
	Name            string    `json:"server_name"`
	Version         string    `json:"version"`
	ConfigLoadTime  time.Time `json:"config_load_time"`
	TLSCertNotAfter time.Time `json:"tls_cert_not_after"`
	SystemAccount   string    `json:"system_account"`
}

// connz and connInfo hold the fields of /connz?auth=true that fleet reads
// (decoding only these keeps a 10,000-connection scan cheap).
type connz struct {
	ID    string     `json:"server_id"`
	Total int        `json:"total"`
	Conns []connInfo `json:"connections"`
}

type connInfo struct {
	Cid     uint64     `json:"cid"`
	Kind    string     `json:"kind"`
	IP      string     `json:"ip"`
	Port    int        `json:"port"`
	Start   time.Time  `json:"start"`
	Name    string     `json:"name"`
	Account string     `json:"account"`
	User    string     `json:"authorized_user"`
	Certs   []peerCert `json:"tls_peer_certs"`
}

type peerCert struct {
	Subject string `json:"subject"`
	SPKI    string `json:"spki_sha256"`
	Cert    string `json:"cert_sha256"`
}

// pager fetches one page of connz at offset.
type pager func(ctx context.Context, offset, limit int) (*connz, error)

// maxPages bounds a scan of one server so that a server whose total keeps
// growing cannot hold the collector for ever.
const maxPages = 100000

// readPages walks connz with limit/offset, sorted by cid. Pages are
// separate snapshots: a connection can shift between them, so the scan
// notes whether the pages agreed (same total, no repeats, rows = total).
func readPages(ctx context.Context, get pager, limit int) ([]connInfo, bool, error) {
	var (
		rows       []connInfo
		seen       = map[uint64]bool{}
		total      = -1
		consistent = true
	)
	for offset, n := 0, 0; n < maxPages; n++ {
		page, err := get(ctx, offset, limit)
		if err != nil {
			return nil, false, err
		}
		if total >= 0 && page.Total != total {
			consistent = false
		}
		total = page.Total
		for _, c := range page.Conns {
			if seen[c.Cid] {
				consistent = false
				continue
			}
			seen[c.Cid] = true
			rows = append(rows, c)
		}
		offset += len(page.Conns)
		if len(page.Conns) < limit || offset >= page.Total {
			break
		}
	}
	if len(rows) != total {
		consistent = false
	}
	return rows, consistent, nil
}

// MonitorSource reads servers through their HTTP monitoring endpoints
// (/varz, /connz?auth=true). Every URL given must answer.
type MonitorSource struct {
	// URLs are the monitoring base URLs, e.g. http://10.0.0.1:8222.
	URLs []string
	// Client is the HTTP client; a client with a 10 s timeout when nil.
	Client *http.Client
}

// Monitor returns a source reading the given monitoring URLs.
func Monitor(urls ...string) *MonitorSource {
	return &MonitorSource{URLs: urls}
}

func (m *MonitorSource) expected() []string { return m.URLs }

var defaultHTTPClient = &http.Client{Timeout: 10 * time.Second}

func (m *MonitorSource) scan(ctx context.Context, o scanOptions) []serverScan {
	out := make([]serverScan, len(m.URLs))
	var wg sync.WaitGroup
	for i, u := range m.URLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = m.scanOne(ctx, u, o)
		}()
	}
	wg.Wait()
	return out
}

func (m *MonitorSource) scanOne(ctx context.Context, base string, o scanOptions) serverScan {
	s := serverScan{key: base}
	base = strings.TrimRight(base, "/")
	if err := m.get(ctx, base+"/varz", &s.varz); err != nil {
		s.err = err
		return s
	}
	if o.varzOnly {
		return s
	}
	get := func(ctx context.Context, offset, limit int) (*connz, error) {
		q := url.Values{"auth": {"true"}, "sort": {"cid"},
			"offset": {strconv.Itoa(offset)}, "limit": {strconv.Itoa(limit)}}
		var c connz
		if err := m.get(ctx, base+"/connz?"+q.Encode(), &c); err != nil {
			return nil, err
		}
		if s.varz.ID != "" && c.ID != s.varz.ID {
			// A restarted server behind the same URL: its pages are no
			// continuation of the earlier ones.
			return nil, fmt.Errorf("fleet: %s: server id changed during the scan", base)
		}
		return &c, nil
	}
	s.rows, s.consistent, s.err = readPages(ctx, get, o.pageSize)
	return s
}

func (m *MonitorSource) get(ctx context.Context, u string, v any) error {
	client := m.Client
	if client == nil {
		client = defaultHTTPClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fleet: GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("fleet: GET %s: %w", u, err)
	}
	return nil
}

// SystemSource reads every server of a cluster through the system
// account: $SYS.REQ.SERVER.PING.VARZ finds the servers, then
// $SYS.REQ.SERVER.<id>.CONNZ pages through each one's connections.
type SystemSource struct {
	// Conn is a connection authenticated to the system account.
	Conn *nats.Conn
	// Timeout bounds each request to one server; default 5 s.
	Timeout time.Duration
	// Gather is how long discovery waits for more servers after the last
	// answer; default 500 ms. When the observer expects a count or names,
	// discovery waits up to Timeout for them, then still Gather for more:
	// a cluster larger than expected must be scanned whole, or a straggler
	// on an extra server would go unseen.
	Gather time.Duration
}

type wantServers struct {
	count int
	names []string
}

// System returns a source asking through nc, a connection to the system
// account.
func System(nc *nats.Conn) *SystemSource { return &SystemSource{Conn: nc} }

func (s *SystemSource) expected() []string { return nil }

// apiResponse is nats-server's ServerAPIResponse with a typed payload.
type apiResponse[T any] struct {
	Server struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	} `json:"server"`
	Data  *T `json:"data"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

func (s *SystemSource) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 5 * time.Second
}

func (s *SystemSource) scan(ctx context.Context, o scanOptions) []serverScan {
	found, err := s.discover(ctx, o.want)
	if err != nil {
		return []serverScan{{key: "$SYS", err: err}}
	}
	out := make([]serverScan, len(found))
	if o.varzOnly {
		for i, v := range found {
			out[i] = serverScan{key: v.ID, varz: v}
		}
		return out
	}
	var wg sync.WaitGroup
	for i, v := range found {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.scanOne(ctx, v, o.pageSize)
		}()
	}
	wg.Wait()
	return out
}

// discover asks every server for its varz and gathers the answers.
func (s *SystemSource) discover(ctx context.Context, want wantServers) ([]varz, error) {
	if s.Conn == nil {
		return nil, errors.New("fleet: system source without a connection")
	}
	inbox := s.Conn.NewRespInbox()
	sub, err := s.Conn.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("fleet: system: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.Conn.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox, nil); err != nil {
		return nil, fmt.Errorf("fleet: system: ping varz: %w", err)
	}
	gather := s.Gather
	if gather <= 0 {
		gather = 500 * time.Millisecond
	}
	deadline := time.Now().Add(s.timeout())
	var out []varz
	seen := map[string]bool{}
	for {
		wait := time.Until(deadline)
		if len(out) > 0 && want.metBy(out) && gather < wait {
			wait = gather // what must answer has: stop when answers dry up
		}
		if wait <= 0 {
			break
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("fleet: system: %w", ctx.Err())
			}
			break
		}
		var r apiResponse[varz]
		if err := json.Unmarshal(msg.Data, &r); err != nil || r.Data == nil || seen[r.Data.ID] {
			continue
		}
		seen[r.Data.ID] = true
		out = append(out, *r.Data)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("fleet: system: no server answered $SYS.REQ.SERVER.PING.VARZ within %s", s.timeout())
	}
	return out, nil
}

// metBy reports whether every server that must answer is among vs; it is
// when nothing is required.
func (w wantServers) metBy(vs []varz) bool {
	if len(w.names) > 0 {
		have := map[string]bool{}
		for _, v := range vs {
			have[v.Name] = true
			have[v.ID] = true
		}
		for _, n := range w.names {
			if !have[n] {
				return false
			}
		}
	}
	return len(vs) >= w.count
}

func (s *SystemSource) scanOne(ctx context.Context, v varz, pageSize int) serverScan {
	out := serverScan{key: v.ID, varz: v}
	subject := "$SYS.REQ.SERVER." + v.ID + ".CONNZ"
	get := func(ctx context.Context, offset, limit int) (*connz, error) {
		req, _ := json.Marshal(map[string]any{"auth": true, "sort": "cid", "offset": offset, "limit": limit})
		rctx, cancel := context.WithTimeout(ctx, s.timeout())
		defer cancel()
		msg, err := s.Conn.RequestWithContext(rctx, subject, req)
		if err != nil {
			return nil, fmt.Errorf("fleet: system: %s connz: %w", v.Name, err)
		}
		var r apiResponse[connz]
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return nil, fmt.Errorf("fleet: system: %s connz: %w", v.Name, err)
		}
		if r.Error != nil {
			return nil, fmt.Errorf("fleet: system: %s connz: %d %s", v.Name, r.Error.Code, r.Error.Description)
		}
		if r.Data == nil {
			return nil, fmt.Errorf("fleet: system: %s connz: empty answer", v.Name)
		}
		return r.Data, nil
	}
	out.rows, out.consistent, out.err = readPages(ctx, get, pageSize)
	return out
}

// SystemAuth says how to authenticate the system-account connection.
// Every server of a mutual-TLS cluster requires a client certificate, this
// connection's included.
type SystemAuth struct {
	User, Password string
	// CredsFile is a NATS credentials file (JWT + seed), instead of user
	// and password.
	CredsFile string
	// CertFile and KeyFile are the client certificate and key; CAFile the
	// CA bundle that verifies the servers.
	CertFile, KeyFile, CAFile string
}

// DialSystem connects to url as a system-account user, for System. The
// connection gives up quickly rather than reconnecting for ever: an
// observer must report an unreachable cluster, not hide it.
func DialSystem(ctx context.Context, url string, auth SystemAuth, opts ...nats.Option) (*nats.Conn, error) {
	o := []nats.Option{nats.Name("natscert-fleet"), nats.MaxReconnects(5), nats.ReconnectWait(500 * time.Millisecond)}
	if auth.User != "" {
		o = append(o, nats.UserInfo(auth.User, auth.Password))
	}
	if auth.CredsFile != "" {
		o = append(o, nats.UserCredentials(auth.CredsFile))
	}
	if (auth.CertFile == "") != (auth.KeyFile == "") {
		return nil, errors.New("fleet: system: a client certificate needs both cert and key files")
	}
	if auth.CertFile != "" {
		o = append(o, nats.ClientCert(auth.CertFile, auth.KeyFile))
	}
	if auth.CAFile != "" {
		o = append(o, nats.RootCAs(auth.CAFile))
	}
	if dl, ok := ctx.Deadline(); ok {
		o = append(o, nats.Timeout(time.Until(dl)))
	}
	nc, err := nats.Connect(url, append(o, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("fleet: system: connect %s: %w", url, err)
	}
	return nc, nil
}
