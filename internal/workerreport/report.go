// Package workerreport is the JSON report examples/worker writes at exit
// when WORKER_REPORT names a file, and the drill reads: which numbered
// fan-out messages the worker received, which requests it answered, and
// what its connection counted. One definition, so that the two cannot
// drift apart.
//
//	r := workerreport.Report{Name: name, Fanout: ledger.Snapshot(), Status: nc.Status()}
//	err := workerreport.Write(path, r)
//	...
//	r, err := workerreport.Read(path)
package workerreport

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/natscert/natscert/bus"
	"github.com/natscert/natscert/internal/seqledger"
	"github.com/natscert/natscert/pki"
)

// Report is one worker process's account of its run.
type Report struct {
	Name string `json:"name"`
	// Fanout is the ledger of <prefix>.fanout: the sequence numbers
	// received, as ranges, and the counts.
	Fanout seqledger.Snapshot `json:"fanout"`
	// Unnumbered counts fan-out messages that carried no sequence number.
	Unnumbered int64 `json:"unnumbered,omitempty"`
	// Answered lists the ids of the requests it replied to, for requests
	// whose payload is a decimal id (the drill's), so that a request that
	// timed out after a reply is charged to the worker that sent it.
	Answered []uint64 `json:"answered"`
	// Handled counts every request it replied to.
	Handled uint64 `json:"handled"`
	// Status is the connection's at exit: attempts, failures by reason,
	// swaps, overlap deliveries, the certificate presented.
	Status bus.Status `json:"status"`
}

// Write writes r to path, through a temporary file renamed over it, so
// that a reader finds the whole report or none.
func Write(path string, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("workerreport: %w", err)
	}
	if err := pki.WriteFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("workerreport: %w", err)
	}
	return nil
}

// Read reads the report at path.
func Read(path string) (Report, error) {
	var r Report
	data, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("workerreport: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("workerreport: %s: %w", path, err)
	}
	return r, nil
}
