package bus

import (
	"time"

	"github.com/natscert/natscert/pki"
)

// Status is what a Conn presents and counts now.
type Status struct {
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	Strategy  string `json:"strategy"`
	// Server, ServerID and ServerName identify the server of the
	// connection in use.
	Server     string `json:"server,omitempty"`
	ServerID   string `json:"server_id,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// Presented is the certificate presented by the connection in use,
	// recorded at its handshake; Roots the roots that verified the server.
	Presented *pki.CertInfo  `json:"presented,omitempty"`
	Roots     []pki.CertInfo `json:"roots,omitempty"`
	// Generation is the material generation of the connection in use;
	// SourceGeneration the one the source serves now. They differ while a
	// change waits for its spread delay or a reconnect.
	Generation       uint64 `json:"generation"`
	SourceGeneration uint64 `json:"source_generation"`
	// ConnectedAt is when the connection in use came up.
	ConnectedAt time.Time `json:"connected_at,omitzero"`
	// TLSName is the name the server's certificate was verified against.
	TLSName string `json:"tls_name,omitempty"`

	Attempts          uint64            `json:"attempts"`
	FailedAttempts    uint64            `json:"failed_attempts"`
	Connects          uint64            `json:"connects"`
	Reconnects        uint64            `json:"reconnects"`
	Disconnects       uint64            `json:"disconnects"`
	Failures          map[Reason]uint64 `json:"failures,omitempty"`
	MaterialLoaded    uint64            `json:"material_loaded"`
	MaterialRejected  uint64            `json:"material_rejected"`
	Swaps             uint64            `json:"swaps"`
	CrossServerSwaps  uint64            `json:"cross_server_swaps"`
	FailedSwaps       uint64            `json:"failed_swaps"`
	OverlapDeliveries uint64            `json:"overlap_deliveries"`
	LastFailure       *Failure          `json:"last_failure,omitempty"`
	LastSwap          *SwapReport       `json:"last_swap,omitempty"`
}

// Status returns what the connection presents and counts now.
func (c *Conn) Status() Status {
	st := Status{
		Name: c.name, Strategy: string(c.cfg.strategy),
		Attempts: c.stats.attempts.Load(), FailedAttempts: c.stats.failedAttempts.Load(),
		Connects: c.stats.connects.Load(), Reconnects: c.stats.reconnects.Load(),
		Disconnects:    c.stats.disconnects.Load(),
		MaterialLoaded: c.stats.loaded.Load(), MaterialRejected: c.stats.rejected.Load(),
		Swaps: c.stats.swaps.Load(), CrossServerSwaps: c.stats.crossSwaps.Load(),
		FailedSwaps: c.stats.swapFails.Load(), OverlapDeliveries: c.stats.overlap.Load(),
		LastFailure: c.lastFailure.Load(), LastSwap: c.lastSwap.Load(),
	}
	for i, r := range reasons {
		if n := c.stats.failures[i].Load(); n > 0 {
			if st.Failures == nil {
				st.Failures = map[Reason]uint64{}
			}
			st.Failures[r] = n
		}
	}
	if c.src != nil {
		st.SourceGeneration = c.src.Snapshot().Generation
	}
	l := c.active.Load()
	if l == nil {
		return st
	}
	if nc := l.conn(); nc != nil && nc.IsConnected() {
		st.Connected = true
		st.Server, st.ServerID, st.ServerName = nc.ConnectedUrlRedacted(), nc.ConnectedServerId(), nc.ConnectedServerName()
	}
	l.mu.Lock()
	if est := l.est; est != nil {
		st.Presented, st.Roots, st.Generation = est.presented, est.roots, est.gen
		st.ConnectedAt, st.TLSName = est.connected, est.tlsName
	}
	l.mu.Unlock()
	return st
}

func rootsFingerprints(roots []pki.CertInfo) []string {
	fps := make([]string, 0, len(roots))
	for _, r := range roots {
		fps = append(fps, r.CertSHA256)
	}
	return fps
}
