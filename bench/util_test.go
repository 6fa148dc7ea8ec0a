package bench

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/internal/embedded"
)

type netConn = net.Conn

var dialer = &net.Dialer{Timeout: 2 * time.Second}

func kickAll(s *embedded.Server) {
	cz, _ := s.NATS.Connz(&server.ConnzOptions{Limit: 100000})
	for _, c := range cz.Conns {
		_ = s.NATS.DisconnectClientByID(c.Cid)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func splitInts(s string) []int {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			out = append(out, n)
		}
	}
	return out
}
