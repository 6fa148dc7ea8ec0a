package bus

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// balancer is a loopback TCP load balancer in front of a cluster: it
// hands each connection it accepts to the next server in turn, so a
// client that dials it again lands on another server than the one it
// has. TLS passes through untouched: the handshake is between the client
// and the server.
type balancer struct {
	ln      net.Listener
	targets []string

	mu    sync.Mutex // guards next, conns, closed
	next  int
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// newBalancer listens on loopback and sends its first connection to
// targets[first]. It stops on the test's cleanup.
func newBalancer(t *testing.T, targets []string, first int) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, targets: targets, next: first, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

// url is the balancer's address under the host name the servers'
// certificates carry.
func (b *balancer) url() string {
	return fmt.Sprintf("tls://localhost:%d", b.ln.Addr().(*net.TCPAddr).Port)
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		target := b.targets[b.next%len(b.targets)]
		b.next++
		b.mu.Unlock()
		b.wg.Add(1)
		go b.relay(in, target)
	}
}

// relay copies both ways until both sides have closed. A side's end of
// stream is passed on as a half-close, so that bytes a peer wrote before
// closing (replies flushed by Close) still arrive.
func (b *balancer) relay(in net.Conn, target string) {
	defer b.wg.Done()
	out, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !b.track(in, out) {
		return
	}
	defer b.untrack(in, out)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, in)
		_ = out.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(in, out)
	_ = in.(*net.TCPConn).CloseWrite()
	<-copied
}

func (b *balancer) track(conns ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *balancer) untrack(conns ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(b.conns, c)
	}
}

func (b *balancer) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	b.done = true
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
