// Package budget estimates how long a certificate rotation across a fleet
// of NATS clients takes, and whether it fits an SLA.
//
// It gives two answers side by side. The simple model is the one operators
// reason with: a reconnect cycle is the reconnect wait plus the handshake
// timeout, a wave is given two cycles, and waves run one after the other.
// The worst case is what nats.go really does: it tries every known server
// once per pass, each failing dial may take the whole handshake timeout,
// and it sleeps once per pass for the reconnect wait plus up to one second
// of TLS jitter. Planning with the first and alerting on the second avoids
// surprises.
//
// The package imports no other package of the project.
//
//	est, err := budget.Compute(budget.Input{
//		ReconnectWait:    2 * time.Second,
//		HandshakeTimeout: 2 * time.Second,
//		Members:          24,
//		MaxUnavailable:   3,
//		SLA:              2 * time.Minute,
//	})
//	if err != nil { ... } // errors.Is(err, budget.ErrInput)
//	fmt.Println(est.Cycle, est.WaveWindow, est.Waves, est.Total) // 4s 8s 8 1m4s
//	fmt.Println(est.WorstTotal, est.Fits, est.WorstFits)          // 1m20s true true
package budget
