package fleet

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Sentinel errors; Status.Err and Observer.Wait wrap them.
var (
	// ErrIncomplete: a server that must answer, or an expected member,
	// could not be seen, or the view moved on every rescan. Never a
	// converged verdict.
	ErrIncomplete = errors.New("incomplete")
	// ErrNotConverged: the view is complete and does not (yet) hold.
	ErrNotConverged = errors.New("not converged")
	// ErrAmbiguous: the same certificate fingerprint was given as both old
	// and new material.
	ErrAmbiguous = errors.New("fingerprint given as both old and new")
)

// Verdict is the outcome of one look at the fleet.
type Verdict string

// Verdicts.
const (
	// Converged: every expected member presents new material, none presents
	// old, every server that must answer did, and that view has been
	// stable for the settle window.
	Converged Verdict = "converged"
	// NotConverged: the view is complete and does not hold yet.
	NotConverged Verdict = "not-converged"
	// Incomplete: something that had to be seen was not.
	Incomplete Verdict = "incomplete"
	// Complete: no old or new material was given, so there is nothing to
	// judge; the view itself is complete.
	Complete Verdict = "complete"
)

// Counts are connections by class. The JSON keys are the class names, so
// scripts read counts.new, counts.old, counts.unknown, counts.none.
type Counts struct {
	Total   int `json:"total"`
	New     int `json:"new"`
	Old     int `json:"old"`
	Unknown int `json:"unknown"`
	None    int `json:"none"`
}

func (c *Counts) add(cl Class) {
	c.Total++
	switch cl {
	case ClassNew:
		c.New++
	case ClassOld:
		c.Old++
	case ClassUnknown:
		c.Unknown++
	case ClassNone:
		c.None++
	}
}

// Member is a client process the observer expects to see. It is matched by
// its connection name when it sets one, else by the fingerprints of the
// leaves it may present (old and new; cert or spki sha256). Replicas that
// share one leaf and set no name are one Member with Count replicas.
type Member struct {
	Name         string   `json:"name,omitempty"`
	Fingerprints []string `json:"fingerprints,omitempty"`
	// Count is the number of connections expected; default 1.
	Count int `json:"count,omitempty"`
}

func (m Member) String() string {
	if m.Name != "" {
		return m.Name
	}
	var short []string
	for _, fp := range m.Fingerprints {
		if n, ok := normalizeFingerprint(fp); ok {
			fp = n[:12]
		}
		short = append(short, fp)
	}
	return "sha256:" + strings.Join(short, "|")
}

func (m Member) want() int {
	if m.Count > 0 {
		return m.Count
	}
	return 1
}

// Connection is one client connection as a server reports it, classified.
type Connection struct {
	Server     string    `json:"server"`
	ServerID   string    `json:"server_id"`
	CID        uint64    `json:"cid"`
	Name       string    `json:"name,omitempty"`
	Account    string    `json:"account,omitempty"`
	User       string    `json:"user,omitempty"`
	Addr       string    `json:"addr"`
	Start      time.Time `json:"start"`
	Subject    string    `json:"subject,omitempty"`
	CertSHA256 string    `json:"cert_sha256,omitempty"`
	SPKISHA256 string    `json:"spki_sha256,omitempty"`
	Class      Class     `json:"class"`
	// Member is the key of the member the connection belongs to: its
	// name, "sha256:<cert>" when it has no name, or "cid:<server>/<cid>"
	// with neither.
	Member string `json:"member,omitempty"`
	// System marks connections of the system account (the collector's
	// own among them): listed, never counted, never judged.
	System bool `json:"system,omitempty"`
	// Superseded marks an older connection of a named member that also
	// has a newer one (it reconnected, perhaps to another server): the
	// newest wins, the older is listed but not counted. One that presents
	// old material still keeps the verdict from Converged.
	Superseded bool `json:"superseded,omitempty"`
}

// Server is one server's identity and its counts.
type Server struct {
	// Key is the monitoring URL (HTTP) or the server id (system path).
	Key             string    `json:"key"`
	Name            string    `json:"name,omitempty"`
	ID              string    `json:"id,omitempty"`
	Version         string    `json:"version,omitempty"`
	ConfigLoadTime  time.Time `json:"config_load_time,omitzero"`
	TLSCertNotAfter time.Time `json:"tls_cert_not_after,omitzero"`
	Answered        bool      `json:"answered"`
	Error           string    `json:"error,omitempty"`
	// Counts are the counted connections on this server.
	Counts Counts `json:"counts"`
	// System and Superseded are connections listed but not counted.
	System     int `json:"system"`
	Superseded int `json:"superseded"`
}

// MemberStatus is one member as seen.
type MemberStatus struct {
	Key         string   `json:"key"`
	Name        string   `json:"name,omitempty"`
	Class       Class    `json:"class"`
	Connections int      `json:"connections"`
	Servers     []string `json:"servers"`
}

// ExpectedStatus is one expected member and what was seen of it.
type ExpectedStatus struct {
	Member Member `json:"member"`
	Seen   int    `json:"seen"`
	Counts Counts `json:"counts"`
}

// Status is one look at the fleet and its verdict.
type Status struct {
	Time    time.Time `json:"time"`
	Verdict Verdict   `json:"verdict"`
	// Reasons say why the verdict is not Converged (or Complete).
	Reasons []string `json:"reasons,omitempty"`
	// Settled: the set of (server, cid, fingerprint) has not changed for
	// the settle window; StableFor is how long it has not.
	Settled   bool          `json:"settled"`
	StableFor time.Duration `json:"stable_for_ns"`
	// Scans is the number of full scans this look took until two agreed.
	Scans int `json:"scans"`
	// Counts are over members' counted connections: system-account and
	// superseded connections excluded.
	Counts         Counts            `json:"counts"`
	ByAccount      map[string]Counts `json:"by_account"`
	Servers        []Server          `json:"servers"`
	MissingServers []string          `json:"missing_servers,omitempty"`
	Expected       []ExpectedStatus  `json:"expected,omitempty"`
	MissingMembers []string          `json:"missing_members,omitempty"`
	// Stragglers are the members still presenting old material on any
	// connection, superseded ones included.
	Stragglers  []string       `json:"stragglers,omitempty"`
	Members     []MemberStatus `json:"members"`
	Connections []Connection   `json:"connections"`
}

// Err is nil when the verdict is Converged or Complete, and wraps
// ErrIncomplete or ErrNotConverged otherwise.
func (s *Status) Err() error {
	switch s.Verdict {
	case Converged, Complete:
		return nil
	case Incomplete:
		return fmt.Errorf("fleet: %w: %s", ErrIncomplete, strings.Join(s.Reasons, "; "))
	default:
		return fmt.Errorf("fleet: %w: %s", ErrNotConverged, strings.Join(s.Reasons, "; "))
	}
}

// memberKey names the member a connection belongs to. A connection an
// expected member claims by fingerprint is keyed by its leaf, whatever
// name it sets: processes that name themselves after a shared host are
// not one member.
func (o *Observer) memberKey(c *Connection) string {
	switch {
	case c.CertSHA256 != "" && (o.cfg.prints[c.CertSHA256] || o.cfg.prints[c.SPKISHA256]):
		return "sha256:" + c.CertSHA256
	case c.Name != "":
		return c.Name
	case c.CertSHA256 != "":
		return "sha256:" + c.CertSHA256
	default:
		return fmt.Sprintf("cid:%s/%d", c.ServerID, c.CID)
	}
}

func serverOf(sc serverScan) Server {
	srv := Server{Key: sc.key, Name: sc.varz.Name, ID: sc.varz.ID, Version: sc.varz.Version,
		ConfigLoadTime: sc.varz.ConfigLoadTime, TLSCertNotAfter: sc.varz.TLSCertNotAfter,
		Answered: sc.err == nil}
	if sc.err != nil {
		srv.Error = sc.err.Error()
	}
	return srv
}

// build turns accepted scans into a Status, without the settle part.
func (o *Observer) build(scans []serverScan, now time.Time) *Status {
	st := &Status{Time: now, ByAccount: map[string]Counts{}}
	// Servers and rows.
	for _, sc := range scans {
		srv := serverOf(sc)
		st.Servers = append(st.Servers, srv)
		if sc.err != nil {
			continue
		}
		sys := sc.varz.SystemAccount
		if sys == "" {
			sys = "$SYS"
		}
		for _, r := range sc.rows {
			if r.Kind != "" && r.Kind != "Client" {
				continue // routes never appear; leaf nodes are servers, not members
			}
			c := Connection{Server: srv.Name, ServerID: srv.ID, CID: r.Cid, Name: r.Name,
				Account: r.Account, User: r.User, Addr: fmt.Sprintf("%s:%d", r.IP, r.Port), Start: r.Start}
			if srv.Name == "" {
				c.Server = srv.Key
			}
			if len(r.Certs) > 0 {
				// The leaf comes first in the peer chain.
				c.Subject, c.CertSHA256, c.SPKISHA256 = r.Certs[0].Subject, r.Certs[0].Cert, r.Certs[0].SPKI
			}
			c.Class = o.cls.classify(c.CertSHA256, c.SPKISHA256)
			c.System = r.Account == sys
			if !c.System {
				c.Member = o.memberKey(&c)
			}
			st.Connections = append(st.Connections, c)
		}
	}
	o.supersede(st.Connections)

	// Counts, per server, per account, per member.
	srvIdx := map[string]int{}
	for i, s := range st.Servers {
		srvIdx[s.ID] = i
	}
	members := map[string]*MemberStatus{}
	var order []string
	for i := range st.Connections {
		c := &st.Connections[i]
		srv := &st.Servers[srvIdx[c.ServerID]]
		switch {
		case c.System:
			srv.System++
			continue
		case c.Superseded:
			srv.Superseded++
			continue
		}
		srv.Counts.add(c.Class)
		st.Counts.add(c.Class)
		a := st.ByAccount[c.Account]
		a.add(c.Class)
		st.ByAccount[c.Account] = a
		m := members[c.Member]
		if m == nil {
			m = &MemberStatus{Key: c.Member, Name: c.Name, Class: c.Class}
			members[c.Member] = m
			order = append(order, c.Member)
		}
		m.Connections++
		m.Class = worse(m.Class, c.Class)
		if !contains(m.Servers, c.Server) {
			m.Servers = append(m.Servers, c.Server)
		}
	}
	sort.Strings(order)
	for _, k := range order {
		st.Members = append(st.Members, *members[k])
	}
	sort.Slice(st.Connections, func(i, j int) bool {
		a, b := &st.Connections[i], &st.Connections[j]
		if a.Server != b.Server {
			return a.Server < b.Server
		}
		return a.CID < b.CID
	})
	return st
}

// supersede marks, for every named member, all but its newest
// connections (the newest `want` when more replicas are expected).
// Connections an expected member claims by fingerprint are left alone:
// replicas that share a host name as their connection name are told
// apart by their leaves, not by that name.
func (o *Observer) supersede(conns []Connection) {
	byName := map[string][]*Connection{}
	for i := range conns {
		c := &conns[i]
		if !c.System && c.Name != "" && !o.cfg.prints[c.CertSHA256] && !o.cfg.prints[c.SPKISHA256] {
			byName[c.Name] = append(byName[c.Name], c)
		}
	}
	for name, cs := range byName {
		keep := 1
		if m, ok := o.cfg.byName[name]; ok {
			keep = m.want()
		}
		if len(cs) <= keep {
			continue
		}
		sort.Slice(cs, func(i, j int) bool {
			if !cs[i].Start.Equal(cs[j].Start) {
				return cs[i].Start.After(cs[j].Start)
			}
			return cs[i].CID > cs[j].CID // same server: a higher cid is newer
		})
		for _, c := range cs[keep:] {
			c.Superseded = true
		}
	}
}

// judge fills the verdict. holdsButUnsettled reports a view that would be
// converged if it had been stable long enough.
func (o *Observer) judge(st *Status, agreed bool, scans int) (holdsButUnsettled bool) {
	var incomplete, fails []string
	st.Scans = scans
	if !agreed {
		incomplete = append(incomplete, fmt.Sprintf("the view moved on each of %d scans (connections changing during pagination)", scans))
	}
	// Servers that must answer.
	answered := map[string]bool{}
	nAnswered := 0
	for _, s := range st.Servers {
		if s.Answered {
			answered[s.Key], answered[s.Name], answered[s.ID] = true, true, true
			nAnswered++
		} else {
			st.MissingServers = append(st.MissingServers, s.Key)
			incomplete = append(incomplete, fmt.Sprintf("server %s did not answer: %s", s.Key, s.Error))
		}
	}
	for _, n := range o.cfg.serverNames {
		if !answered[n] {
			st.MissingServers = append(st.MissingServers, n)
			incomplete = append(incomplete, fmt.Sprintf("server %s did not answer", n))
		}
	}
	if o.cfg.serverCount > 0 && nAnswered < o.cfg.serverCount {
		incomplete = append(incomplete, fmt.Sprintf("%d of %d servers answered", nAnswered, o.cfg.serverCount))
	}

	// Expected members.
	inScope := map[string]bool{} // member keys judged under WithExpectedOnly
	byName, byPrint := map[string][]*Connection{}, map[string][]*Connection{}
	if len(o.cfg.members) > 0 {
		for i := range st.Connections {
			c := &st.Connections[i]
			if c.System || c.Superseded {
				continue
			}
			if c.Name != "" {
				byName[c.Name] = append(byName[c.Name], c)
			}
			if c.CertSHA256 != "" {
				byPrint[c.CertSHA256] = append(byPrint[c.CertSHA256], c)
			}
			if c.SPKISHA256 != "" && c.SPKISHA256 != c.CertSHA256 {
				byPrint[c.SPKISHA256] = append(byPrint[c.SPKISHA256], c)
			}
		}
	}
	for _, m := range o.cfg.members {
		es := ExpectedStatus{Member: m}
		var matched []*Connection
		if m.Name != "" {
			matched = byName[m.Name]
		} else {
			seen := map[*Connection]bool{}
			for _, fp := range m.Fingerprints {
				n, _ := normalizeFingerprint(fp)
				for _, c := range byPrint[n] {
					if !seen[c] {
						seen[c] = true
						matched = append(matched, c)
					}
				}
			}
		}
		for _, c := range matched {
			es.Seen++
			es.Counts.add(c.Class)
			inScope[c.Member] = true
		}
		if es.Seen < m.want() {
			st.MissingMembers = append(st.MissingMembers, m.String())
			incomplete = append(incomplete, fmt.Sprintf("member %s: %d of %d connections seen", m, es.Seen, m.want()))
		} else if o.cls.judging() && es.Counts.New != es.Seen {
			fails = append(fails, fmt.Sprintf("member %s: %d of %d connections on new material", m, es.Counts.New, es.Seen))
		}
		st.Expected = append(st.Expected, es)
	}

	if o.cfg.memberCount > 0 && st.Counts.Total < o.cfg.memberCount {
		incomplete = append(incomplete, fmt.Sprintf("%d of %d members seen", st.Counts.Total, o.cfg.memberCount))
	}

	// Every member in scope: none on old; with strict, none unknown or
	// without a certificate. A superseded connection is not counted, but
	// one on old material is still up and presenting it (a swap still
	// draining, or a second process under the same name): it fails the
	// verdict until it is gone, and a settle window absorbs a drain.
	var scope Counts
	supersededOld := 0
	straggler := map[string]bool{}
	for i := range st.Connections {
		c := &st.Connections[i]
		if c.System || (o.cfg.expectedOnly && !inScope[c.Member]) {
			continue
		}
		if c.Class == ClassOld && !straggler[c.Member] {
			straggler[c.Member] = true
			st.Stragglers = append(st.Stragglers, c.Member)
		}
		if c.Superseded {
			if c.Class == ClassOld {
				supersededOld++
			}
			continue
		}
		scope.add(c.Class)
	}
	sort.Strings(st.Stragglers)
	if o.cls.judging() {
		if n := scope.Old + supersededOld; n > 0 {
			msg := fmt.Sprintf("%d connections present old material (%d members)", n, len(st.Stragglers))
			if supersededOld > 0 {
				msg += fmt.Sprintf("; %d of them superseded by a newer connection but still up", supersededOld)
			}
			fails = append(fails, msg)
		}
		if o.cfg.strict && scope.Unknown > 0 {
			fails = append(fails, fmt.Sprintf("strict: %d connections present unknown certificates", scope.Unknown))
		}
		if o.cfg.strict && scope.None > 0 {
			fails = append(fails, fmt.Sprintf("strict: %d connections present no certificate", scope.None))
		}
	}

	switch {
	case len(incomplete) > 0:
		st.Verdict = Incomplete
		st.Reasons = append(incomplete, fails...)
	case !o.cls.judging():
		st.Verdict = Complete
	case len(fails) > 0:
		st.Verdict = NotConverged
		st.Reasons = fails
	case !st.Settled:
		st.Verdict = NotConverged
		st.Reasons = []string{fmt.Sprintf("not settled: view stable for %s of %s", st.StableFor.Round(time.Millisecond), o.cfg.settle)}
		return true
	default:
		st.Verdict = Converged
	}
	return false
}

// worse orders classes for a member with several connections: old beats
// everything, then unknown, none, new.
func worse(a, b Class) Class {
	rank := map[Class]int{ClassNew: 0, ClassNone: 1, ClassUnknown: 2, ClassOld: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
