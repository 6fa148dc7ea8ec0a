// Package bench holds natscert's benchmarks that compare bus with plain
// nats.go side by side on real embedded servers with verify: true.
//
//	go test -run '^$' -bench Publish -count 5 ./bench/     publish throughput, bus vs nats.go
//	NATSCERT_LOAD=1 go test -run Load -v ./bench/          failed handshakes a minute, files-to-reconnected,
//	                                                       swap convergence vs the handshake floor, vs reconnect
//
// TestLoadConvergence takes NATSCERT_BENCH_SIZES (default 100,500,1000),
// NATSCERT_BENCH_LIMIT (swap limiters to run side by side: window sizes
// and "adaptive", default adaptive) and NATSCERT_BENCH_STRATEGIES=swap
// (leave reconnect out):
//
//	NATSCERT_LOAD=1 NATSCERT_BENCH_LIMIT=64,adaptive NATSCERT_BENCH_STRATEGIES=swap \
//		go test -run TestLoadConvergence -v ./bench/
//
// Numbers move with machine load: compare the rows of one run, not runs.
package bench
