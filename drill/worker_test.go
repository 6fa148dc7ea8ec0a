package drill

import (
	"strings"
	"testing"
)

// A worker that died without its report is counted from its log, and the
// report's loss_accounting says which members that concerns.
func TestWorkerWithoutReport(t *testing.T) {
	m := &member{name: "member-0001"}
	m.fromLog("level=INFO msg=\"worker stopping\" handled=3 fanout_received=4 published=0\n" +
		"level=WARN msg=\"nats error\" err=\"remote error: tls: bad certificate\"\n")
	if m.unreported != 1 || m.unreportedReceived != 4 || m.tlsFailures.Load() != 1 || m.attempts != 1 {
		t.Fatalf("from the log: %d unreported, %d received, %d TLS failures, %d attempts",
			m.unreported, m.unreportedReceived, m.tlsFailures.Load(), m.attempts)
	}
	d := &run{members: []*member{m, {name: "member-0002"}}}
	if acct := d.processAccounting(); !strings.HasPrefix(acct, "exact:") || !strings.Contains(acct, "except 1 worker process(es) of 1 member(s)") {
		t.Fatalf("loss_accounting %q", acct)
	}
}
