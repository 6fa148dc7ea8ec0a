// Package bench holds natscert's benchmarks that compare bus with plain
// nats.go side by side on real embedded servers with verify: true.
//
//	go test -run '^$' -bench Publish -count 5 ./bench/     publish throughput, bus vs nats.go
//	NATSCERT_LOAD=1 go test -run Load -v ./bench/          failed handshakes a minute, files-to-reconnected,
//	                                                       swap convergence vs the handshake floor, vs reconnect
//
// Numbers move with machine load: compare the rows of one run, not runs.
package bench
