package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

func init() { commands = append(commands, newWatchCmd) }

func newWatchCmd() *cobra.Command {
	var (
		files   material.Files
		role    string
		recheck time.Duration
		wait    time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "watch --cert FILE --key FILE [--roots BUNDLE] [--issuer BUNDLE]",
		Short: "Run a file source on a set of material and print every load outcome",
		Long: `Watch a certificate, its key and CA bundles the way a process linked with
natscert does, and print one line for every outcome: loaded (a new set was
validated and is now served), rejected (the files do not validate, with the
reason; the last good set stays), unchanged (the files were re-read and hold
what is served). Runs until interrupted.

The directories of the files are watched, so rename-over writes and
Kubernetes Secret volume updates are seen; the files are also re-read every
--recheck. Use it to check that a delivery mechanism writes material a
process will accept, at the moment it writes it.

Example: a client's material as mounted from a Secret
  natscert watch --cert /etc/nats/tls.crt --key /etc/nats/tls.key \
    --roots /etc/nats/ca.crt --json

With --json every line is a JSON object with at least event, reason,
cert_sha256 and not_after.

Exit status: 0 when interrupted after a first good load; 1 when the first
set read is not valid; 2 for usage errors and files that cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if files.Cert == "" && files.Roots == "" {
				return usageError("watch: name --cert and --key, or --roots")
			}
			if (files.Cert == "") != (files.Key == "") {
				return usageError("watch: --cert and --key go together")
			}
			r, err := pki.ParseRole(role)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			ctx := cmd.Context()
			p := &watchPrinter{w: cmd.OutOrStdout(), json: asJSON}
			opts := []material.FileOption{
				material.WithRole(r),
				material.WithRecheckInterval(recheck),
				material.WithOnEvent(p.print),
				// Every outcome is printed: logging it too would say it twice.
				material.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			}
			startCtx := ctx
			if wait > 0 {
				var cancel context.CancelFunc
				startCtx, cancel = context.WithTimeout(ctx, wait)
				defer cancel()
				opts = append(opts, material.WithWaitForFiles())
			}
			src, err := material.NewFileSource(startCtx, files, opts...)
			switch {
			case errors.Is(err, pki.ErrUnreadable):
				return exitWith(exitUsage, err)
			case errors.Is(err, pki.ErrInvalid):
				return exitWith(exitDoesNotHold, err)
			case err != nil:
				return exitWith(exitUsage, err)
			}
			<-ctx.Done()
			return src.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&files.Cert, "cert", "", "certificate file (leaf first, then intermediates)")
	f.StringVar(&files.Key, "key", "", "private key file of --cert")
	f.StringVar(&files.Roots, "roots", "", "CA bundle that verifies the peer (NATS_TLS_CA)")
	f.StringVar(&files.Issuer, "issuer", "", "CA bundle that must verify --cert's chain")
	f.StringVar(&role, "role", "client", "role the certificate must fit: client or server")
	f.DurationVar(&recheck, "recheck", material.DefaultRecheckInterval, "re-read the files this often even without a file event (0: never)")
	f.DurationVar(&wait, "wait", 0, "wait up to this long for the files to appear and validate at start (0: fail at once)")
	f.BoolVar(&asJSON, "json", false, "print JSON lines")
	return cmd
}

// watchLine is one outcome as printed with --json.
type watchLine struct {
	Event      material.EventKind `json:"event"`
	Time       time.Time          `json:"time"`
	Reason     string             `json:"reason,omitempty"`
	Generation uint64             `json:"generation"`
	CertSHA256 string             `json:"cert_sha256,omitempty"`
	SPKISHA256 string             `json:"spki_sha256,omitempty"`
	Subject    string             `json:"subject,omitempty"`
	NotAfter   *time.Time         `json:"not_after,omitempty"`
	Roots      []watchRoot        `json:"roots,omitempty"`
	Findings   pki.Findings       `json:"findings,omitempty"`
}

type watchRoot struct {
	Subject    string    `json:"subject"`
	CertSHA256 string    `json:"cert_sha256"`
	NotAfter   time.Time `json:"not_after"`
}

// watchPrinter prints outcomes; the mutex keeps lines whole should a
// source ever report from two goroutines.
type watchPrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (p *watchPrinter) print(ev material.Event) {
	l := watchLine{Event: ev.Kind, Time: ev.Time.UTC(), Reason: ev.Reason, Generation: ev.Snapshot.Generation, Findings: ev.Findings}
	if leaf := ev.Snapshot.Leaf; leaf != nil {
		na := leaf.NotAfter
		l.CertSHA256, l.SPKISHA256, l.Subject, l.NotAfter = leaf.CertSHA256, leaf.SPKISHA256, leaf.Subject, &na
	}
	for _, r := range ev.Snapshot.Roots {
		l.Roots = append(l.Roots, watchRoot{Subject: r.Subject, CertSHA256: r.CertSHA256, NotAfter: r.NotAfter})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		// One object a line: compact, unlike writeJSON.
		if b, err := json.Marshal(l); err == nil {
			_, _ = p.w.Write(append(b, '\n'))
		}
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-9s gen=%d", l.Time.Format(time.RFC3339), l.Event, l.Generation)
	if l.CertSHA256 != "" {
		fmt.Fprintf(&b, " cert_sha256=%s not_after=%s subject=%q", l.CertSHA256, l.NotAfter.Format(time.RFC3339), l.Subject)
	}
	if len(l.Roots) > 0 {
		fmt.Fprintf(&b, " roots=%d", len(l.Roots))
	}
	switch {
	case l.Event == material.EventRejected && l.Generation == 0:
		fmt.Fprintf(&b, " (nothing served) reason=%q", l.Reason)
	case l.Event == material.EventRejected:
		fmt.Fprintf(&b, " (serving the last good set) reason=%q", l.Reason)
	default:
		fmt.Fprintf(&b, " trigger=%s", l.Reason)
	}
	fmt.Fprintln(p.w, b.String())
}
