package drill

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// floorDialers is how many dials run at once when the floor is measured: a
// fleet reconnects in parallel, and 8 is what the baseline notes measured.
const floorDialers = 8

// floor is the handshake floor: how fast the cluster accepts new mTLS
// connections under the run's own load, hence the least time n members
// can take to move.
type floor struct {
	Dials    int
	Failed   int
	Elapsed  time.Duration
	PerSec   float64
	Duration time.Duration // n / PerSec
}

// measureFloor times n full mTLS NATS connects (TLS handshake, CONNECT,
// PING/PONG), spread over the servers, with floorDialers at once.
func measureFloor(ctx context.Context, s *setup, n int) (floor, error) {
	cert, err := s.harnessCert("natscert drill floor")
	if err != nil {
		return floor{}, err
	}
	tlsConf := s.harnessTLS(cert)
	var next, failed atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for d := 0; d < floorDialers; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				nc, err := nats.Connect(s.url(int(i)),
					nats.Secure(tlsConf.Clone()), nats.Name("natscert-drill-floor"),
					nats.NoReconnect(), nats.Timeout(5*time.Second))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				nc.Close()
			}
		}()
	}
	wg.Wait()
	f := floor{Dials: n, Failed: int(failed.Load()), Elapsed: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return f, fmt.Errorf("drill: floor: %w", err)
	}
	if f.Failed == n {
		return f, fmt.Errorf("drill: floor: every dial failed: %w", firstErr)
	}
	f.PerSec = float64(n-f.Failed) / f.Elapsed.Seconds()
	f.Duration = time.Duration(float64(n) / f.PerSec * float64(time.Second))
	return f, nil
}
