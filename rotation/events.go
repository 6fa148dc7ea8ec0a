package rotation

import (
	"errors"
	"time"

	"github.com/natscert/natscert/budget"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrGateFailed: a wave's gate did not hold and the run stopped
	// (on_gate_failure: stop). Nothing is rolled back: trust is left at
	// old+new; resume or abort.
	ErrGateFailed = errors.New("gate failed")
	// ErrPaused: a gate failed and the operator left the pause; resume or
	// abort.
	ErrPaused = errors.New("paused")
	// ErrPhaseFailed: what a phase had to observe did not hold (a reload
	// not taking effect, a probe refused, a kicked member not back, the
	// proof).
	ErrPhaseFailed = errors.New("phase failed")
	// ErrIncomplete: something that had to be observed could not be read
	// (a server's monitoring endpoint, a member's log).
	ErrIncomplete = errors.New("incomplete")
	// ErrInterrupted: the context ended mid-way; resume or abort.
	ErrInterrupted = errors.New("interrupted")
	// ErrInProgress: the journal holds an unfinished rotation (resume or
	// abort it), or another run, resume or abort holds the state
	// directory's lock.
	ErrInProgress = errors.New("a rotation is in progress")
	// ErrNotResumable: there is nothing to resume or abort, or it is too
	// late to abort (revoke has begun).
	ErrNotResumable = errors.New("not resumable")
)

// Phase names, in order.
const (
	PhasePreflight = "preflight"
	PhaseTrustBoth = "trust_both"
	// PhaseServerCerts renews the servers' own certificates (when the
	// plan's material.server_certs is set).
	PhaseServerCerts = "server_certs"
	// PhaseServerRoots, PhaseServerReconnect and PhaseServerRootsNew
	// rotate the server CA (when the plan's material.new_server_ca is
	// set): the members' roots gain the new server CA; after
	// server_certs every member is kicked and must come back; then the
	// old server CA leaves the members' roots and a second kick round
	// must come back too.
	PhaseServerRoots     = "server_roots"
	PhaseServerReconnect = "server_reconnect"
	PhaseServerRootsNew  = "server_roots_new"
	PhaseWaves           = "waves"
	PhaseConverged       = "converged"
	PhaseRevoke          = "revoke"
	PhaseProof           = "proof"
	PhaseReport          = "report"
	PhaseAbort           = "abort"
)

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	PhaseStarted    EventKind = "phase_started"
	PhaseObserved   EventKind = "phase_observed"
	PhaseEnded      EventKind = "phase_ended"
	WaveStarted     EventKind = "wave_started"
	MemberDelivered EventKind = "member_delivered"
	MemberRestarted EventKind = "member_restarted"
	WaveGated       EventKind = "wave_gated"
	WaveEnded       EventKind = "wave_ended"
	GateFailed      EventKind = "gate_failed"
	ServerReloaded  EventKind = "server_reloaded"
	ConnKicked      EventKind = "conn_kicked"
	ProbeDone       EventKind = "probe"
	StepSkipped     EventKind = "step_skipped"
	RotationEnded   EventKind = "rotation_ended"
)

// Event is one step of progress. Events are delivered synchronously, in
// order, from the goroutine doing the work: a handler must not block long.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	Phase    string    `json:"phase,omitempty"`
	Workload string    `json:"workload,omitempty"`
	Wave     int       `json:"wave,omitempty"`
	Member   string    `json:"member,omitempty"`
	Server   string    `json:"server,omitempty"`
	OK       bool      `json:"ok"`
	Detail   string    `json:"detail,omitempty"`
}

// Result is what a run did and observed.
type Result struct {
	Plan  string    `json:"plan"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// OK: rotated, converged and proven; false after an abort, even one
	// that restored everything (Outcome aborted).
	OK bool `json:"ok"`
	// Outcome is completed, failed, paused, interrupted or aborted.
	Outcome string          `json:"outcome"`
	Error   string          `json:"error,omitempty"`
	Phases  []PhaseRecord   `json:"phases"`
	Waves   []WaveRecord    `json:"waves,omitempty"`
	Members []MemberResult  `json:"members,omitempty"`
	Proof   []ServerProof   `json:"proof,omitempty"`
	Kicks   []KickRecord    `json:"kicks,omitempty"`
	Budget  budget.Estimate `json:"budget"`
	Samples []Sample        `json:"samples,omitempty"`
}

// PhaseRecord is one phase: when, whether it held, what was observed.
type PhaseRecord struct {
	Name     string    `json:"name"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	Observed string    `json:"observed,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Skipped: the journal says the phase was completed by an earlier run.
	Skipped bool `json:"skipped,omitempty"`
}

// WaveRecord is one wave of one workload.
type WaveRecord struct {
	Workload string    `json:"workload"`
	Index    int       `json:"index"`
	Members  []string  `json:"members"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	Gate     string    `json:"gate,omitempty"`
	// LogCounts are matching log lines per pattern, over the wave's members.
	LogCounts map[string]int `json:"log_counts,omitempty"`
	Skipped   bool           `json:"skipped,omitempty"`
}

// MemberResult is one member at the end of the run.
type MemberResult struct {
	Member
	Delivered bool `json:"delivered"`
	Restarts  int  `json:"restarts"`
	OnNew     bool `json:"on_new"`
	Kicked    bool `json:"kicked,omitempty"`
}

// ServerProof is the proof on one server: the old certificate refused
// (in the handshake; after it, for a same-CA rotation revoked by
// pinned_certs) and the new one accepted, in the same step.
type ServerProof struct {
	Server string      `json:"server"`
	OK     bool        `json:"ok"`
	Old    ProbeResult `json:"old"`
	New    ProbeResult `json:"new"`
	// OldRefused: the server refused the old probe (never a timeout).
	OldRefused bool `json:"old_refused"`
	// ServerCertSHA256 is the renewed server leaf the server must present
	// (material.server_certs); New.ServerCertSHA256 is what it did.
	ServerCertSHA256 string `json:"server_cert_sha256,omitempty"`
	// OldRemaining counts connections still presenting old material.
	OldRemaining int `json:"old_remaining"`
}

// KickRecord is a connection kicked, and whether its member came back:
// on new material at revoke; at all in a server CA rotation's kick rounds
// (which prove the member trusts the servers' new certificate).
type KickRecord struct {
	// Phase is revoke, server_reconnect, server_roots_new or abort.
	Phase    string    `json:"phase,omitempty"`
	Server   string    `json:"server"`
	CID      uint64    `json:"cid"`
	Member   string    `json:"member,omitempty"`
	At       time.Time `json:"at"`
	Returned bool      `json:"returned"`
}

// Sample counts plan members' connections by material at one moment.
type Sample struct {
	At      time.Time `json:"at"`
	Old     int       `json:"old"`
	New     int       `json:"new"`
	Unknown int       `json:"unknown"`
}

// GateFailure describes a failed gate to the GateFailure handler.
type GateFailure struct {
	Workload string
	Wave     int
	Members  []string
	Reason   string
}

// GateDecision is what to do after a failed gate.
type GateDecision int

// Gate decisions.
const (
	// DecideStop ends the run with ErrGateFailed; nothing is rolled back.
	DecideStop GateDecision = iota
	// DecidePause stops the rotation with ErrPaused, to be resumed.
	DecidePause
	// DecideRetry observes the gate again.
	DecideRetry
)

// DecideAbort is DecideStop by its older name: it rolls nothing back.
const DecideAbort = DecideStop
