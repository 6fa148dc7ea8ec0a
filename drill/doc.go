// Package drill rehearses a certificate rotation on an embedded NATS
// cluster under traffic, and measures what it costs.
//
// A drill starts an in-process cluster with mutual TLS (servers trusting
// an old client CA), connects simulated control-plane clients through
// package bus (each with its own leaf and connection name, spread over the
// servers), and runs steady traffic: a publisher fans numbered messages out
// to every member, and a requester sends requests to the members' queue
// group. It measures the handshake floor (N mTLS connects with 8 dialers)
// under that load, then runs the rotation through package rotation itself
// (trust both, server certificates, waves, converged, revoke, proof) with
// the members as its Target: new files written where each member reads
// them, and in restart mode the member stopped and started again on them.
// The servers' own leaves are renewed from the server CA that issued them,
// which the members' roots already hold, so the renewal must cost the
// members nothing.
//
// Loss is counted exactly: every member keeps a bitmap of the sequence
// numbers it received. The loss window opens once every member receives
// the stream and closes when the publisher stops; after a drain, lost is
// the window minus what was received, a message received twice is a
// duplicate, and one below the highest seen is out of order. A request
// fails when it times out or finds no responder; a failure a member had
// answered is charged to that member.
//
// The strategies differ in what they promise. Every strategy promises that
// the rotation completes with no member left on old material, that every
// server's certificate is renewed with no member connection lost, and that
// the proof passes (on every server the old client certificate rejected,
// the new one accepted, and the renewed server leaf presented); swap also
// promises zero lost messages and zero failed requests. Restart and
// reconnect losses are measured and reported, not promised.
//
// Usage:
//
//	display := drill.NewProgress(os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
//	res, err := drill.Run(ctx, drill.Config{
//		Strategy: drill.StrategySwap, // default
//		Clients:  100,                // default
//		Progress: display.Event,
//	})
//	display.Close()
//	if err != nil {
//		return err // the drill could not run
//	}
//	res.WriteSummary(os.Stdout)
//	report.WriteFiles(".", res.Report) // report.json, report.html
//	if !res.OK() {
//		fmt.Println(res.Report.Broken) // the promises that did not hold
//	}
//
// Compare runs restart, reconnect and swap on the same setup, one after
// the other, and WriteComparison prints them side by side.
//
// With Config.Processes the members are examples/worker processes (found
// next to the natscert binary as natscert-worker, or built with go build
// into the user cache directory), run with WORKER_REPORT: at exit each
// writes the sequence numbers it received, the requests it answered and
// its bus status (internal/workerreport), and the drill counts them as it
// counts in-process members, over the same window, exactly. The window
// opens once every worker's server has sent it a fan-out message. A worker
// that died without its report is counted from its log instead (lost then
// is a lower bound), and the report's loss_accounting says so.
package drill
