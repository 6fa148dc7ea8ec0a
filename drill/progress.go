package drill

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/natscert/natscert/report"
)

// EventKind says what a progress event is about.
type EventKind string

// Kinds of progress events.
const (
	EventStep   EventKind = "step"   // setup and teardown steps
	EventPhase  EventKind = "phase"  // a rotation phase or wave started or ended
	EventSample EventKind = "sample" // a timeline sample (about every 250 ms)
)

// Event is one thing a running drill tells its caller.
type Event struct {
	Time time.Time
	// Elapsed is the time since the drill started.
	Elapsed time.Duration
	Kind    EventKind
	// Text says what happened, in one line.
	Text string
	// Sample is set for EventSample.
	Sample *report.Sample
	// Lost is messages lost so far across the fleet, for EventSample: the
	// gaps already behind every member's highest message.
	Lost int64
}

// Progress receives a drill's events, in order, from one goroutine at a
// time. It must not block for long.
type Progress func(Event)

// Display shows a drill's progress. On a terminal (live) it keeps one
// status line updated in place under the lines of steps and phases;
// otherwise it prints plain lines, a status line every few seconds, so
// that logs stay readable.
type Display struct {
	mu        sync.Mutex
	w         io.Writer
	live      bool
	status    bool // a status line is on screen (live only)
	lastPlain time.Time
	prefix    string
}

// NewProgress returns a display writing to w. live selects the in-place
// status line; pass whether w is a terminal.
func NewProgress(w io.Writer, live bool) *Display { return &Display{w: w, live: live} }

// WithPrefix returns a display sharing d's writer that starts every line
// with prefix, for runs shown one after the other (--compare).
func (d *Display) WithPrefix(prefix string) *Display {
	return &Display{w: d.w, live: d.live, prefix: prefix}
}

// Event shows e; pass d.Event as Config.Progress.
func (d *Display) Event(e Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Kind == EventSample {
		line := statusLine(e)
		if d.live {
			fmt.Fprintf(d.w, "\r\033[K%s%s", d.prefix, line)
			d.status = true
			return
		}
		if e.Time.Sub(d.lastPlain) >= 5*time.Second {
			d.lastPlain = e.Time
			fmt.Fprintf(d.w, "%s%s\n", d.prefix, line)
		}
		return
	}
	if d.status {
		fmt.Fprint(d.w, "\r\033[K")
		d.status = false
	}
	fmt.Fprintf(d.w, "%s%6.1fs  %s\n", d.prefix, e.Elapsed.Seconds(), e.Text)
}

// Close ends the status line so that what follows starts on a new line.
func (d *Display) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status {
		fmt.Fprint(d.w, "\r\033[K")
		d.status = false
	}
}

func statusLine(e Event) string {
	s := e.Sample
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  connections old %d new %d other %d  |  %.0f msg/s delivered  |  lost so far %d  failures %d",
		e.Elapsed.Seconds(), s.Old, s.New, s.Unknown, s.MsgRate, e.Lost, s.Failures)
	return b.String()
}
