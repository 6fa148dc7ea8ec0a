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

// Floor is the handshake floor: how fast the cluster accepts new mTLS
// connections under the run's own load, hence the least time n members
// can take to move.
type Floor struct {
	// Dials is how many connects were timed, Failed how many failed.
	Dials, Failed int
	// Elapsed is the time all dials took.
	Elapsed time.Duration
	// PerSec is the handshake rate: successful dials per second.
	PerSec float64
	// Duration is members / PerSec: the least time the fleet's members
	// take to move to new material, one handshake each.
	Duration time.Duration
}

// measureFloor times n full mTLS NATS connects (TLS handshake, CONNECT,
// PING/PONG), spread over the servers, with floorDialers at once, and
// works out the floor of a fleet of members.
func measureFloor(ctx context.Context, s *setup, n, members int) (Floor, error) {
	cert, err := s.harnessCert("natscert drill floor")
	if err != nil {
		return Floor{}, err
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
	f := Floor{Dials: n, Failed: int(failed.Load()), Elapsed: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return f, fmt.Errorf("drill: floor: %w", err)
	}
	if f.Failed == n {
		return f, fmt.Errorf("drill: floor: every dial failed: %w", firstErr)
	}
	f.PerSec = float64(n-f.Failed) / f.Elapsed.Seconds()
	f.Duration = time.Duration(float64(members) / f.PerSec * float64(time.Second))
	return f, nil
}
