package rotation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrPlan is wrapped by every error about the plan itself: a field that is
// unknown, missing or out of range.
var ErrPlan = errors.New("invalid plan")

// Plan is what a rotation does: which servers, which material, which
// members in which workloads, in which waves, behind which gates. The YAML
// plan file fills this struct (docs/plan.md); programs may build it in code.
// Relative paths are resolved against Dir.
type Plan struct {
	// Name names the rotation in events, the journal and the report.
	Name string `yaml:"name" json:"name"`
	// StateDir holds the journal, its lock, backups of replaced files and
	// minted material. Default: ".natscert-<name>" next to the plan file.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
	// SLA, when set, is the time the whole rotation must fit in, checked
	// against the budget before anything is touched.
	SLA time.Duration `yaml:"sla" json:"sla,omitempty"`
	// OnGateFailure is pause or stop (abort: an older name of stop); empty
	// lets the caller decide (the CLI pauses on a terminal, stops
	// otherwise). Neither rolls anything back.
	OnGateFailure GateAction `yaml:"on_gate_failure" json:"on_gate_failure,omitempty"`
	// Parallel rolls the workloads at the same time, each with its own
	// waves; otherwise one after the other in plan order.
	Parallel bool `yaml:"parallel" json:"parallel,omitempty"`

	Servers   []ServerSpec `yaml:"servers" json:"servers"`
	Material  Material     `yaml:"material" json:"material"`
	Workloads []Workload   `yaml:"workloads" json:"workloads"`
	Budget    BudgetSpec   `yaml:"budget" json:"budget"`
	Timeouts  Timeouts     `yaml:"timeouts" json:"timeouts"`

	// Dir resolves relative paths; LoadPlan sets it to the plan file's
	// directory. Empty means the working directory.
	Dir string `yaml:"-" json:"-"`
}

// ServerSpec is one nats-server as the plan describes it.
type ServerSpec struct {
	// Name identifies the server in events, the report and the state
	// directory; default: the host:port of ClientURL.
	Name string `yaml:"name" json:"name,omitempty"`
	// ClientURL is where probes dial, tls://host:port.
	ClientURL string `yaml:"client_url" json:"client_url"`
	// MonitorURL is the HTTP monitoring endpoint (varz, connz).
	MonitorURL string `yaml:"monitor_url" json:"monitor_url"`
	// System is the system account, for $SYS requests (kick, reload);
	// required: revoke and a server CA rotation kick connections.
	System *SystemAccount `yaml:"system" json:"system,omitempty"`
	// Reload says how the server is made to re-read its configuration.
	Reload ReloadSpec `yaml:"reload" json:"reload"`
	// CAFile is the server's ca_file: the client-trust bundle.
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// Deliver copies a local file to the server's host; default: the
	// server's files are local paths.
	Deliver *Command `yaml:"deliver" json:"deliver,omitempty"`
	// CurrentCA is a local copy of what ca_file holds now; required
	// with deliver, whose files are not read back. trust_both adds the
	// new client CA to it and revoke removes the old one, so that every
	// other CA the server trusts is kept; abort restores it.
	CurrentCA string `yaml:"current_ca" json:"current_ca,omitempty"`
	// CertFile and KeyFile are the server's own certificate and key
	// (tls.cert_file, tls.key_file); required with material.server_certs.
	CertFile string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file" json:"key_file,omitempty"`
	// PinnedCertsFile is a file natscert owns, included inside the
	// server's tls block (include "natscert-pinned.conf"); required for a
	// same-CA client leaf rotation, which revokes by pinned_certs.
	PinnedCertsFile string `yaml:"pinned_certs_file" json:"pinned_certs_file,omitempty"`
}

// SystemAccount holds credentials of the server's system account.
type SystemAccount struct {
	User     string `yaml:"user" json:"user"`
	Password string `yaml:"password" json:"-"`
}

// Reload methods.
const (
	ReloadSignal  = "signal"  // SIGHUP to Pid or the pid in PidFile
	ReloadCommand = "command" // run Command, e.g. nats-server --signal reload=PID
	ReloadSystem  = "system"  // $SYS.REQ.SERVER.<id>.RELOAD
	ReloadNone    = "none"    // something else reloads; natscert only observes
)

// ReloadSpec says how to reload one server.
type ReloadSpec struct {
	// Method is signal, command, system or none.
	Method  string   `yaml:"method" json:"method"`
	Pid     int      `yaml:"pid" json:"pid,omitempty"`
	PidFile string   `yaml:"pid_file" json:"pid_file,omitempty"`
	Command *Command `yaml:"command" json:"command,omitempty"`
}

// Command is a shell command, a text/template run by /bin/sh -c. The
// fields available depend on where it is used (see docs/plan.md); the
// template function quote shell-quotes a value.
type Command struct {
	Run string `yaml:"run" json:"run"`
	// Timeout bounds one run; default 60 s.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Material names the certificates and keys of the rotation.
type Material struct {
	// ServerCA verifies the servers (probes and system connections); it
	// may hold several CAs. In a server CA rotation it is the server CA
	// the members trust today.
	ServerCA string `yaml:"server_ca" json:"server_ca"`
	// NewServerCA, when set, rotates the server CA: every member's roots
	// gain it (observed), the servers move to leaves it issues
	// (server_certs), every member must reconnect to them, then the old
	// server CA leaves the members' roots. It needs server_certs, each
	// member's roots_file, and server_certs.routes.
	NewServerCA string `yaml:"new_server_ca" json:"new_server_ca,omitempty"`
	// OldClientCA is the client CA servers trust today.
	OldClientCA string `yaml:"old_client_ca" json:"old_client_ca"`
	// NewClientCA is the client CA to move to.
	NewClientCA string `yaml:"new_client_ca" json:"new_client_ca"`
	// NewClientCAKey mints member and probe leaves that are not given.
	NewClientCAKey string `yaml:"new_client_ca_key" json:"new_client_ca_key,omitempty"`
	// OldClientCAKey mints the old probe leaf when it is not given.
	OldClientCAKey string `yaml:"old_client_ca_key" json:"old_client_ca_key,omitempty"`
	// Probe leaves, one under each CA; never a member's.
	Probe ProbeMaterial `yaml:"probe" json:"probe"`
	// LeafLifetime is the lifetime of minted leaves; default 90 days.
	LeafLifetime time.Duration `yaml:"leaf_lifetime" json:"leaf_lifetime,omitempty"`
	// Pinned are more client certificates (PEM files) to keep accepted
	// when a same-CA leaf rotation revokes by pinned_certs: clients of
	// the servers that are not members of the plan. Every other leaf is
	// dropped at revoke.
	Pinned []string `yaml:"pinned" json:"pinned,omitempty"`
	// ServerCerts renews the servers' own certificates, when set.
	ServerCerts *ServerCerts `yaml:"server_certs" json:"server_certs,omitempty"`
}

// ServerCerts renews every server's own certificate: from the server CA
// that issued it (a renewal: clients keep trusting the servers), or from
// material.new_server_ca (a server CA rotation). Each new leaf has the
// names (SANs) of the server's current one.
type ServerCerts struct {
	// CA issues the new leaves; default material.new_server_ca when set,
	// else material.server_ca. It must be a CA of one of the two: moving
	// the servers to a CA the members do not trust would cut them off.
	CA string `yaml:"ca" json:"ca,omitempty"`
	// CAKey is CA's private key; it mints each server's new leaf.
	CAKey string `yaml:"ca_key" json:"ca_key"`
	// Lifetime of the new leaves; default material.leaf_lifetime.
	Lifetime time.Duration `yaml:"lifetime" json:"lifetime,omitempty"`
	// Routes says how the servers' routes use TLS; required with a server
	// CA rotation, which does not rotate a route tls block: RoutesNone or
	// RoutesSeparate.
	Routes string `yaml:"routes" json:"routes,omitempty"`
}

// Route TLS of the servers, as a server CA rotation must be told.
const (
	// RoutesNone: no cluster { tls { } } block (plain routes, or no
	// cluster).
	RoutesNone = "none"
	// RoutesSeparate: the route tls block has its own cert_file, key_file
	// and ca_file, which the rotation neither writes nor needs changed;
	// they rotate on their own schedule.
	RoutesSeparate = "separate"
)

// ProbeMaterial holds the probe leaves.
type ProbeMaterial struct {
	Old KeyPair `yaml:"old" json:"old"`
	New KeyPair `yaml:"new" json:"new"`
	// User and Password, when the servers require them in CONNECT.
	User     string `yaml:"user" json:"user,omitempty"`
	Password string `yaml:"password" json:"-"`
}

// KeyPair names a certificate file and its key file.
type KeyPair struct {
	Cert string `yaml:"cert" json:"cert,omitempty"`
	Key  string `yaml:"key" json:"key,omitempty"`
}

// Mode is how a workload's members pick up new material.
type Mode string

// Modes.
const (
	// ModeRestart: the member loads files at start-up; it is restarted.
	ModeRestart Mode = "restart"
	// ModeReload: the member watches its files and reconnects by itself.
	ModeReload Mode = "reload"
)

// MatchBy is how a member is recognised in the servers' view.
type MatchBy string

// Ways to match a member.
const (
	// MatchName matches the connection name the member sets.
	MatchName MatchBy = "name"
	// MatchFingerprint matches the certificate the member presents: the
	// old leaf before, the new leaf after. Replicas share one leaf.
	MatchFingerprint MatchBy = "fingerprint"
)

// GateAction is what a failed gate does.
type GateAction string

// Gate actions.
const (
	// GatePause stops and waits for an operator; left alone, the run ends
	// with ErrPaused (exit 4) and can be resumed or aborted.
	GatePause GateAction = "pause"
	// GateStop ends the run with ErrGateFailed (exit 1). Nothing is
	// rolled back: the rotation stays in progress, trust at old+new, to
	// be resumed or aborted (natscert rotate resume, abort).
	GateStop GateAction = "stop"
	// GateAbort is GateStop by its older name, still accepted: it
	// stops the run and rolls nothing back.
	GateAbort GateAction = "abort"
)

// Workload is a group of members that roll together, in waves.
type Workload struct {
	Name string `yaml:"name" json:"name"`
	Mode Mode   `yaml:"mode" json:"mode"`
	// Restart restarts one member (restart mode). Template fields:
	// .Member, .Workload, .CertFile, .KeyFile.
	Restart *Command `yaml:"restart" json:"restart,omitempty"`
	// Deliver copies one file to the member's host. Template fields:
	// .Src (a local file), .Dst, .Member, .Workload. Default: write Dst.
	Deliver *Command     `yaml:"deliver" json:"deliver,omitempty"`
	Waves   WaveSpec     `yaml:"waves" json:"waves"`
	Gates   GateSpec     `yaml:"gates" json:"gates"`
	Members []MemberSpec `yaml:"members" json:"members"`
}

// MemberSpec is one member: a client process, or replicas sharing a leaf.
type MemberSpec struct {
	// Name is the connection name (match: name) or an identifier.
	Name  string  `yaml:"name" json:"name"`
	Match MatchBy `yaml:"match" json:"match,omitempty"`
	// Replicas share this member's leaf (match: fingerprint); default 1.
	Replicas int `yaml:"replicas" json:"replicas,omitempty"`
	// CertFile and KeyFile are where the member reads its leaf.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// New is the member's new leaf; minted from new_client_ca_key when
	// empty.
	New KeyPair `yaml:"new" json:"new,omitempty"`
	// Old is the member's current leaf; read from CertFile/KeyFile when
	// empty (and they are local). Abort restores it.
	Old KeyPair `yaml:"old" json:"old,omitempty"`
	// Log is the member's log file for log gates; default from the
	// workload's gates.log.file template.
	Log string `yaml:"log" json:"log,omitempty"`
	// RootsFile is where the member reads its roots, the CA bundle that
	// verifies the servers (NATS_TLS_CA); required with
	// material.new_server_ca.
	RootsFile string `yaml:"roots_file" json:"roots_file,omitempty"`
}

// WaveSpec sizes the waves of a workload.
type WaveSpec struct {
	// Size is members per wave; default 1.
	Size int `yaml:"size" json:"size,omitempty"`
	// MaxUnavailable is a synonym of Size, in Kubernetes words.
	MaxUnavailable int `yaml:"max_unavailable" json:"max_unavailable,omitempty"`
	// Pause is waited after each gated wave but the last.
	Pause time.Duration `yaml:"pause" json:"pause,omitempty"`
}

// GateSpec is what must hold before the next wave.
type GateSpec struct {
	// Timeout is how long a wave's members get to present new material;
	// default 60 s.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Settle is how long the view must stay unchanged; default 2 s.
	Settle time.Duration `yaml:"settle" json:"settle,omitempty"`
	// MaxFailures is the most TLS/auth failure lines allowed per wave, in
	// the members' logs; default 0.
	MaxFailures int `yaml:"max_failures" json:"max_failures"`
	// Log counts lines in members' logs since the wave began.
	Log *LogGate `yaml:"log" json:"log,omitempty"`
	// Checks must exit 0. Template fields: .Workload, .Wave, .Members.
	Checks []Command `yaml:"checks" json:"checks,omitempty"`
}

// LogGate counts matching log lines.
type LogGate struct {
	// File is a template for each member's log file (.Member, .Workload).
	File string `yaml:"file" json:"file,omitempty"`
	// Command prints the member's log since .Since (RFC 3339); used
	// instead of File for remote logs.
	Command *Command `yaml:"command" json:"command,omitempty"`
	// Patterns replace the defaults (DefaultLogPatterns).
	Patterns []LogPattern `yaml:"patterns" json:"patterns,omitempty"`
	// RootsLoaded matches the line a member logs when it loads new roots,
	// which must also hold the roots' fingerprints (cert_sha256); a
	// server CA rotation observes reload-mode members by it. Default
	// DefaultRootsLoaded.
	RootsLoaded string `yaml:"roots_loaded" json:"roots_loaded,omitempty"`
}

// DefaultRootsLoaded matches the line package bus logs when it loads new
// material: msg="nats material loaded" ... roots="[<sha256> ...]".
const DefaultRootsLoaded = `nats material loaded`

// LogPattern counts lines matching Regexp; more than Max fails the gate.
// Max -1 only counts.
type LogPattern struct {
	Name   string `yaml:"name" json:"name"`
	Regexp string `yaml:"regexp" json:"regexp"`
	Max    *int   `yaml:"max" json:"max,omitempty"`
}

// BudgetSpec holds what the budget estimate needs beyond the plan.
type BudgetSpec struct {
	// ReconnectWait is the members' wait between reconnects; default 2 s.
	ReconnectWait time.Duration `yaml:"reconnect_wait" json:"reconnect_wait,omitempty"`
	// HandshakeTimeout is the TLS handshake timeout; default 2 s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" json:"handshake_timeout,omitempty"`
	// RestartTime is how long a member takes to start; default 1 s.
	RestartTime time.Duration `yaml:"restart_time" json:"restart_time,omitempty"`
}

// Timeouts bound the observations of each phase.
type Timeouts struct {
	// Reload bounds waiting for every server's config_load_time to change
	// and probes to pass; default 30 s.
	Reload time.Duration `yaml:"reload" json:"reload,omitempty"`
	// Converge bounds the converged phase; default 60 s.
	Converge time.Duration `yaml:"converge" json:"converge,omitempty"`
	// Return bounds a kicked member's return on new material; default 30 s.
	Return time.Duration `yaml:"return" json:"return,omitempty"`
	// Probe bounds one probe; default 5 s.
	Probe time.Duration `yaml:"probe" json:"probe,omitempty"`
}

// LoadPlan reads and checks a plan file. Unknown fields are errors.
func LoadPlan(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rotation: read plan: %w", err)
	}
	p, err := ParsePlan(bytes.NewReader(b))
	if err != nil {
		return nil, &pathError{msg: "rotation: " + path + ": " + strings.TrimPrefix(err.Error(), "rotation: "), err: err}
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	p.Dir = abs
	return p, nil
}

// ParsePlan decodes and checks a plan. Unknown fields are errors.
func ParsePlan(r io.Reader) (*Plan, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("rotation: read plan: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("rotation: %w: the plan is empty", ErrPlan)
		}
		return nil, fmt.Errorf("rotation: %w: %s", ErrPlan, fieldsOf(src, err))
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// pathError puts the plan file's name in front of an error and keeps it
// for errors.Is.
type pathError struct {
	msg string
	err error
}

func (e *pathError) Error() string { return e.msg }
func (e *pathError) Unwrap() error { return e.err }

var yamlLine = regexp.MustCompile(`line (\d+): `)

// fieldsOf rewrites a YAML decoding error so that each problem names the
// field it is about ("line 7: workloads[0].waves.size: cannot unmarshal
// ..."), found by walking the document to that line.
func fieldsOf(src []byte, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return msg
	}
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		var line int
		fmt.Sscanf(m, "line %d: ", &line)
		if path := pathAt(&root, line, ""); path != "" {
			return m + path + ": "
		}
		return m
	})
}

// pathAt finds the dotted path of the key or value on line.
func pathAt(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := pathAt(c, line, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if p := pathAt(v, line, path); p != "" {
				return p
			}
			if k.Line == line {
				return path
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := pathAt(c, line, fmt.Sprintf("%s[%d]", prefix, i)); p != "" {
				return p
			}
		}
	case yaml.ScalarNode:
		if n.Line == line {
			return prefix
		}
	}
	return ""
}

// Validate checks the plan and names the first field that is wrong.
func (p *Plan) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("rotation: %w: %s: %s", ErrPlan, field, fmt.Sprintf(format, args...))
	}
	if p.Name == "" {
		return bad("name", "required")
	}
	switch p.OnGateFailure {
	case "", GatePause, GateStop, GateAbort:
	default:
		return bad("on_gate_failure", "%q is not one of pause, stop", p.OnGateFailure)
	}
	if p.SLA < 0 {
		return bad("sla", "negative")
	}
	if len(p.Servers) == 0 {
		return bad("servers", "at least one server is required")
	}
	names := map[string]bool{}
	for i, s := range p.Servers {
		f := fmt.Sprintf("servers[%d]", i)
		if s.ClientURL == "" {
			return bad(f+".client_url", "required")
		}
		if s.MonitorURL == "" {
			return bad(f+".monitor_url", "required")
		}
		if s.CAFile == "" {
			return bad(f+".ca_file", "required")
		}
		if s.System == nil || s.System.User == "" {
			// Revoke kicks connections still on old material, and a server
			// CA rotation kicks every member: without a way to kick, those
			// phases would fail after the trust was changed.
			return bad(f+".system", "required: the system account's user and password kick connections ($SYS.REQ.SERVER.<id>.KICK) at revoke and in a server CA rotation's kick rounds")
		}
		if s.Deliver != nil && s.CurrentCA == "" {
			return bad(f+".current_ca", "required with deliver: ca_file is not read back, and trust_both and revoke keep the other CAs it trusts")
		}
		if s.Name != "" {
			if names[s.Name] {
				return bad(f+".name", "%q is used twice", s.Name)
			}
			names[s.Name] = true
		}
		switch s.Reload.Method {
		case ReloadSignal:
			if s.Reload.Pid == 0 && s.Reload.PidFile == "" {
				return bad(f+".reload", "method signal needs pid or pid_file")
			}
			// kill(2) reads pid 0 and negative pids as process groups
			// (-1: every process the user may signal).
			if s.Reload.Pid < 0 {
				return bad(f+".reload.pid", "%d is not a process id", s.Reload.Pid)
			}
		case ReloadCommand:
			if s.Reload.Command == nil || s.Reload.Command.Run == "" {
				return bad(f+".reload.command.run", "required by method command")
			}
		case ReloadSystem, ReloadNone:
		case "":
			return bad(f+".reload.method", "required: signal, command, system or none")
		default:
			return bad(f+".reload.method", "%q is not one of signal, command, system, none", s.Reload.Method)
		}
	}
	m := p.Material
	if m.ServerCA == "" {
		return bad("material.server_ca", "required (verifies the servers for probes)")
	}
	if m.OldClientCA == "" {
		return bad("material.old_client_ca", "required")
	}
	if m.NewClientCA == "" {
		return bad("material.new_client_ca", "required")
	}
	if (m.Probe.Old.Cert == "") != (m.Probe.Old.Key == "") {
		return bad("material.probe.old", "cert and key go together")
	}
	if (m.Probe.New.Cert == "") != (m.Probe.New.Key == "") {
		return bad("material.probe.new", "cert and key go together")
	}
	if m.Probe.Old.Cert == "" && m.OldClientCAKey == "" {
		return bad("material.probe.old", "required, or material.old_client_ca_key to mint it")
	}
	if m.Probe.New.Cert == "" && m.NewClientCAKey == "" {
		return bad("material.probe.new", "required, or material.new_client_ca_key to mint it")
	}
	if sc := m.ServerCerts; sc != nil {
		if sc.CAKey == "" {
			return bad("material.server_certs.ca_key", "required: it mints the servers' new leaves")
		}
		if sc.Lifetime < 0 {
			return bad("material.server_certs.lifetime", "negative")
		}
		for i, s := range p.Servers {
			if s.CertFile == "" || s.KeyFile == "" {
				return bad(fmt.Sprintf("servers[%d].cert_file", i), "cert_file and key_file are required with material.server_certs")
			}
		}
		switch sc.Routes {
		case "", RoutesNone, RoutesSeparate:
		default:
			return bad("material.server_certs.routes", "%q is not one of none, separate (natscert does not rotate route TLS that shares the servers' files)", sc.Routes)
		}
	}
	if m.NewServerCA != "" {
		switch {
		case m.ServerCerts == nil:
			return bad("material.server_certs", "required with material.new_server_ca: the servers move to leaves it issues (give ca_key)")
		case m.ServerCerts.Routes == "":
			return bad("material.server_certs.routes", "required with material.new_server_ca: none (no cluster tls block) or separate (the cluster tls block has its own cert_file, key_file and ca_file); natscert does not rotate route TLS that shares the servers' files: move it to its own files first (docs/runbook.md)")
		}
	}
	if p.SameClientCA() {
		for i, s := range p.Servers {
			if s.PinnedCertsFile == "" {
				return bad(fmt.Sprintf("servers[%d].pinned_certs_file", i), "required: old and new client CA are the same, so old leaves are revoked by pinned_certs")
			}
		}
	}
	if len(p.Workloads) == 0 {
		return bad("workloads", "at least one workload is required")
	}
	wnames, mnames := map[string]bool{}, map[string]bool{}
	for i, w := range p.Workloads {
		f := fmt.Sprintf("workloads[%d]", i)
		if w.Name == "" {
			return bad(f+".name", "required")
		}
		if wnames[w.Name] {
			return bad(f+".name", "%q is used twice", w.Name)
		}
		wnames[w.Name] = true
		switch w.Mode {
		case ModeRestart:
		case ModeReload:
			if w.Restart != nil {
				return bad(f+".restart", "mode reload restarts nothing; remove restart or use mode restart")
			}
		case "":
			return bad(f+".mode", "required: restart or reload")
		default:
			return bad(f+".mode", "%q is not one of restart, reload", w.Mode)
		}
		if w.Waves.Size < 0 || w.Waves.MaxUnavailable < 0 {
			return bad(f+".waves.size", "negative")
		}
		if w.Waves.Size > 0 && w.Waves.MaxUnavailable > 0 && w.Waves.Size != w.Waves.MaxUnavailable {
			return bad(f+".waves", "size and max_unavailable disagree; give one")
		}
		if w.Waves.Pause < 0 || w.Gates.Timeout < 0 || w.Gates.Settle < 0 {
			return bad(f+".waves/gates", "negative duration")
		}
		if w.Gates.MaxFailures < 0 {
			return bad(f+".gates.max_failures", "negative")
		}
		if lg := w.Gates.Log; lg != nil {
			if lg.File != "" && lg.Command != nil {
				return bad(f+".gates.log", "give file or command, not both")
			}
			if _, err := regexp.Compile(lg.RootsLoaded); err != nil {
				return bad(f+".gates.log.roots_loaded", "not a regular expression: %v", err)
			}
			for j, pt := range lg.Patterns {
				pf := fmt.Sprintf("%s.gates.log.patterns[%d]", f, j)
				if pt.Name == "" {
					return bad(pf+".name", "required")
				}
				if _, err := regexp.Compile(pt.Regexp); err != nil || pt.Regexp == "" {
					return bad(pf+".regexp", "not a regular expression: %v", err)
				}
			}
		}
		for j, c := range w.Gates.Checks {
			if c.Run == "" {
				return bad(fmt.Sprintf("%s.gates.checks[%d].run", f, j), "required")
			}
		}
		if len(w.Members) == 0 {
			return bad(f+".members", "at least one member is required")
		}
		for j, mb := range w.Members {
			mf := fmt.Sprintf("%s.members[%d]", f, j)
			if mb.Name == "" {
				return bad(mf+".name", "required")
			}
			if mnames[mb.Name] {
				return bad(mf+".name", "%q is used twice", mb.Name)
			}
			mnames[mb.Name] = true
			switch mb.Match {
			case "", MatchName:
				if mb.Replicas > 1 {
					return bad(mf+".replicas", "only members matched by fingerprint share a leaf")
				}
			case MatchFingerprint:
			default:
				return bad(mf+".match", "%q is not one of name, fingerprint", mb.Match)
			}
			if mb.Replicas < 0 {
				return bad(mf+".replicas", "negative")
			}
			if mb.CertFile == "" {
				return bad(mf+".cert_file", "required")
			}
			if mb.KeyFile == "" {
				return bad(mf+".key_file", "required")
			}
			if (mb.New.Cert == "") != (mb.New.Key == "") {
				return bad(mf+".new", "cert and key go together")
			}
			if mb.New.Cert == "" && m.NewClientCAKey == "" {
				return bad(mf+".new", "required, or material.new_client_ca_key to mint it")
			}
			if m.NewServerCA != "" {
				if mb.RootsFile == "" {
					return bad(mf+".roots_file", "required with material.new_server_ca: the member's roots gain the new server CA there")
				}
				lg := w.Gates.Log
				if w.Mode == ModeReload && mb.Log == "" && (lg == nil || lg.File == "" && lg.Command == nil) {
					return bad(mf+".log", "required with material.new_server_ca in mode reload (or gates.log.file or command): the member's log shows the roots it loaded")
				}
			}
		}
	}
	return nil
}

// SameClientCA reports whether old and new client CA are one file: a
// same-CA leaf rotation, where the old leaves are revoked by pinned_certs
// because the CA cannot leave ca_file. (Two files holding the same CA are
// recognised when the material is loaded, and preflight then requires
// pinned_certs_file as Validate does here.)
func (p *Plan) SameClientCA() bool {
	m := p.Material
	return m.OldClientCA != "" && filepath.Clean(p.path(m.OldClientCA)) == filepath.Clean(p.path(m.NewClientCA))
}

// path resolves a plan path against Dir.
func (p *Plan) path(name string) string {
	if name == "" || filepath.IsAbs(name) || p.Dir == "" {
		return name
	}
	return filepath.Join(p.Dir, name)
}

// StateDirPath is where the journal, backups and minted material live:
// StateDir resolved against the plan file's directory, or
// .natscert-<name> beside it. `natscert rotate` writes its report there
// unless told otherwise.
func (p *Plan) StateDirPath() string { return p.stateDir() }

// stateDir is where the journal, backups and minted material live.
func (p *Plan) stateDir() string {
	if p.StateDir != "" {
		return p.path(p.StateDir)
	}
	return p.path(".natscert-" + p.Name)
}

// waveSize is the members per wave of w.
func (w *Workload) waveSize() int {
	switch {
	case w.Waves.Size > 0:
		return w.Waves.Size
	case w.Waves.MaxUnavailable > 0:
		return w.Waves.MaxUnavailable
	}
	return 1
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
