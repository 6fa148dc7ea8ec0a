package report

import "time"

// Report is the record of one rotation or drill: what report.json holds and
// what report.html is rendered from. Scripts read its JSON keys; keep them
// stable.
type Report struct {
	// Kind is "drill" or "rotation".
	Kind       string    `json:"kind"`
	Title      string    `json:"title"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Strategy is how clients picked up new material: restart, reconnect or swap.
	Strategy string `json:"strategy,omitempty"`
	// Setup holds the parameters of the run (clients, servers, rate, waves, seed...).
	Setup map[string]any `json:"setup,omitempty"`

	// OK is true when every promise held and the proof passed.
	OK bool `json:"ok"`
	// Broken names each promise that did not hold, in plain words.
	Broken []string `json:"broken,omitempty"`

	// Lost totals over all members.
	Lost       Lost  `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	// OldCertRejected is the proof's headline: every server refused a probe
	// presenting old material.
	OldCertRejected bool `json:"old_cert_rejected"`

	Phases      []Phase      `json:"phases"`
	Waves       []Wave       `json:"waves,omitempty"`
	Members     []Member     `json:"members,omitempty"`
	Timeline    []Sample     `json:"timeline,omitempty"`
	Budget      *Budget      `json:"budget,omitempty"`
	Proof       *Proof       `json:"proof,omitempty"`
	Convergence *Convergence `json:"convergence,omitempty"`
}

// Lost counts what the promise says must not be lost.
type Lost struct {
	Messages int64 `json:"messages"`
	Requests int64 `json:"requests"`
}

// Phase is one observed phase of the rotation.
type Phase struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// DurationMS is End-Start in milliseconds, kept for scripts.
	DurationMS int64 `json:"duration_ms"`
	OK         bool  `json:"ok"`
	// Observed says in plain words what was observed before the phase ended.
	Observed string `json:"observed,omitempty"`
}

// Wave is one wave of members moved to new material.
type Wave struct {
	Index      int       `json:"index"`
	Workload   string    `json:"workload,omitempty"`
	Members    []string  `json:"members"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	DurationMS int64     `json:"duration_ms"`
	OK         bool      `json:"ok"`
	// Gate says what the gate observed (or why it failed).
	Gate string `json:"gate,omitempty"`
}

// Member is one client of the fleet and what the rotation cost it.
type Member struct {
	Name   string `json:"name"`
	Server string `json:"server,omitempty"`
	// GapMS is the longest time the member had no usable connection.
	GapMS             int64  `json:"gap_ms"`
	Lost              Lost   `json:"lost"`
	Duplicates        int64  `json:"duplicates"`
	OutOfOrder        int64  `json:"out_of_order"`
	TLSFailures       int64  `json:"tls_failures"`
	ReconnectAttempts int64  `json:"reconnect_attempts"`
	OldCertSHA256     string `json:"old_cert_sha256,omitempty"`
	NewCertSHA256     string `json:"new_cert_sha256,omitempty"`
	// OnNew is true when the servers last saw this member present new material.
	OnNew bool `json:"on_new"`
}

// Sample is one point of the timeline.
type Sample struct {
	// T is the time since StartedAt, in milliseconds.
	T int64 `json:"t_ms"`
	// Connections presenting old, new and other material, in the servers' view.
	Old     int `json:"old"`
	New     int `json:"new"`
	Unknown int `json:"unknown"`
	// MsgRate is messages delivered per second to members since the last sample.
	MsgRate float64 `json:"msg_rate"`
	// Failures is TLS/auth failures and failed requests since the last sample.
	Failures int64 `json:"failures"`
}

// Budget compares the plan's prediction with what happened.
type Budget struct {
	PredictedMS int64 `json:"predicted_ms"`
	WorstCaseMS int64 `json:"worst_case_ms"`
	ActualMS    int64 `json:"actual_ms"`
	// SLAMS is the SLA the plan was checked against, 0 if none.
	// Fits: the actual time is within the SLA, or without one within the
	// prediction.
	SLAMS int64 `json:"sla_ms,omitempty"`
	Fits  bool  `json:"fits"`
}

// Proof is the final check: old material rejected, new accepted, per server.
type Proof struct {
	OK      bool          `json:"ok"`
	Servers []ServerProof `json:"servers"`
}

// ServerProof is the proof on one server.
type ServerProof struct {
	Server          string `json:"server"`
	OldRejected     bool   `json:"old_rejected"`
	NewAccepted     bool   `json:"new_accepted"`
	OldFingerprints int    `json:"old_fingerprints_remaining"`
	Detail          string `json:"detail,omitempty"`
}

// Convergence compares how fast the fleet moved with the handshake floor.
type Convergence struct {
	// MS is the time from the first member moving to all members on new material.
	MS int64 `json:"ms"`
	// FloorMS is members divided by the handshake rate measured in the same run.
	FloorMS int64 `json:"floor_ms"`
	// HandshakesPerSecond is the measured rate the floor is based on.
	HandshakesPerSecond float64 `json:"handshakes_per_second"`
}
