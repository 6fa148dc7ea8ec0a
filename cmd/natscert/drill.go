package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/natscert/natscert/drill"
	"github.com/natscert/natscert/report"
)

func init() { commands = append(commands, newDrillCmd) }

func newDrillCmd() *cobra.Command {
	var (
		cfg      drill.Config
		strategy string
		out      string
		compare  bool
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Rehearse a full rotation on an embedded cluster under traffic",
		Long: `Rehearse a whole rotation on an embedded NATS cluster under traffic,
and measure what it costs the clients, before doing it for real.

The drill starts nats-servers in this process (mutual TLS, loopback only)
trusting an old client CA, connects simulated control-plane clients (each
with its own certificate and connection name), and runs steady traffic: a
publisher fans numbered messages out to every client, a requester sends
requests to the clients' queue group. It measures the handshake floor,
then rotates through the same state machine as "natscert rotate":

  preflight     material, servers and clients checked; budget computed
  trust_both    servers trust the old and the new client CA
  server_certs  each server's own leaf renewed from its CA and reloaded;
                no client connection may be lost
  waves         new client leaves delivered in waves, each wave gated on
                the servers seeing its clients on the new certificate
  converged     every client on new material, settled
  revoke        servers trust the new client CA only
  proof         on every server the old client certificate is refused and
                the new one accepted, and the server presents its renewed
                leaf

Every message is accounted for exactly (lost, duplicated, out of order)
and every request answered or failed. The default run takes about a
minute, mostly the 15 s of traffic before and after the rotation
(--steady) and the 5 s pauses between its 4 waves (--waves, --pause).

Strategies, how the clients pick up their new certificate:
  swap       make-before-break: a second connection dials with the new
             certificate, subscriptions move to it, the old one drains.
             Promises zero lost messages and zero failed requests.
  reconnect  the connection re-dials with the new files (jittered
             ForceReconnect). What each reconnect loses is measured, not
             promised.
  restart    today's approach: clients load their files once and are
             restarted in waves. What they lose while down is measured,
             not promised.
Every strategy also promises: every client ends on new material, the
servers' certificates are renewed, and the proof passes.

Output: the summary on stdout (the report as JSON with --json; with
--compare, a JSON array of one report per strategy), progress on stderr,
and report.json and report.html in --out (with --compare, one directory
per strategy).

Exit codes:
  0  every promise of the strategy held (with --compare, of each strategy)
  1  a promise did not hold; the summary and the report name it
  2  usage error: a bad flag, or an --out directory that cannot be created
  3  the drill could not run (the cluster did not start, a client could
     not connect)
  4  interrupted

Examples:
  # the default rehearsal: swap, 100 clients, 3 servers, about a minute
  natscert drill --out /tmp/drill

  # the three strategies side by side on the same setup (about 3 minutes)
  natscert drill --compare --out /tmp/drill

  # a larger fleet, the report for a script
  natscert drill --clients 1000 --json --out /tmp/drill > drill.json
  jq '{ok, lost, broken}' drill.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !compare {
				s, err := drill.ParseStrategy(strategy)
				if err != nil {
					return usageError("%v", err)
				}
				cfg.Strategy = s
			}
			if cfg.Clients < 0 || cfg.Servers < 0 || cfg.Rate < 0 || cfg.RequestRate < 0 || cfg.Waves < 0 {
				return usageError("drill: counts and rates must not be negative")
			}
			if cfg.Steady < 0 || cfg.Pause < 0 {
				return usageError("drill: durations must not be negative")
			}
			// A minute of drill must not end on a directory it cannot
			// write: check --out first.
			if err := os.MkdirAll(out, 0o755); err != nil {
				return usageError("drill: --out: %v", err)
			}
			stderr := cmd.ErrOrStderr()
			// In place status lines only where they render: a terminal
			// that understands the erase-line sequence.
			live := false
			if f, ok := stderr.(*os.File); ok {
				live = term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
			}
			display := drill.NewProgress(stderr, live)
			if compare {
				return runCompare(cmd, cfg, out, display, asJSON)
			}
			cfg.Progress = display.Event
			began := time.Now()
			res, err := drill.Run(cmd.Context(), cfg)
			display.Close()
			if err != nil {
				return drillError(cmd.Context(), err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, res.Report); err != nil {
					return err
				}
			} else if err := res.WriteSummary(w); err != nil {
				return err
			}
			if err := report.WriteFiles(out, res.Report); err != nil {
				return exitWith(exitDoesNotHold, err)
			}
			fmt.Fprintf(stderr, "natscert drill: %s in %s; wrote %s\n", verdict(res), time.Since(began).Round(100*time.Millisecond),
				filepath.Join(out, report.JSONFile))
			if !res.OK() {
				return exitWith(exitDoesNotHold, fmt.Errorf("drill: promise broken: %s", strings.Join(res.Report.Broken, "; ")))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&strategy, "strategy", string(drill.StrategySwap), "how clients pick up new material: restart, reconnect or swap")
	f.IntVar(&cfg.Clients, "clients", drill.DefaultClients, "simulated clients")
	f.IntVar(&cfg.Servers, "servers", drill.DefaultServers, "embedded servers")
	f.IntVar(&cfg.Rate, "rate", drill.DefaultRate, "fan-out messages delivered per second, all clients together")
	f.IntVar(&cfg.RequestRate, "request-rate", drill.DefaultRequestRate, "requests per second to the clients' queue group")
	f.IntVar(&cfg.Waves, "waves", drill.DefaultWaves, "waves the clients are moved in")
	// Zero in a drill.Config means the default, so 0 here does too; the
	// help says how to ask for next to nothing.
	f.DurationVar(&cfg.Steady, "steady", drill.DefaultSteady, "traffic before and after the rotation (0 means the default; 1ms for next to none)")
	f.DurationVar(&cfg.Pause, "pause", drill.DefaultPause, "pause between waves (0 means the default; 1ms for next to none)")
	f.BoolVar(&cfg.Processes, "processes", false, "run clients as worker processes instead of goroutines (each reports its exact ledger at exit)")
	f.StringVar(&cfg.WorkerPath, "worker", "", "worker binary for --processes (default: next to natscert, or built into the user cache)")
	f.Int64Var(&cfg.Seed, "seed", 1, "seed of the run's random choices (which clients share a wave); 0 means the default, 1")
	f.StringVar(&out, "out", ".", "directory for report.json and report.html")
	f.BoolVar(&compare, "compare", false, "run restart, reconnect and swap on the same setup and print them side by side")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON instead of the summary")
	return cmd
}

func runCompare(cmd *cobra.Command, cfg drill.Config, out string, display *drill.Display, asJSON bool) error {
	var shown *drill.Display
	began := time.Now()
	results, err := drill.Compare(cmd.Context(), cfg, func(s drill.Strategy) drill.Progress {
		if shown != nil {
			shown.Close()
		}
		shown = display.WithPrefix(fmt.Sprintf("[%-9s] ", s))
		return shown.Event
	})
	if shown != nil {
		shown.Close()
	}
	if err != nil {
		return drillError(cmd.Context(), err)
	}
	w := cmd.OutOrStdout()
	if asJSON {
		var reps []*report.Report
		for _, r := range results {
			reps = append(reps, r.Report)
		}
		if err := writeJSON(w, reps); err != nil {
			return err
		}
	} else if err := drill.WriteComparison(w, results); err != nil {
		return err
	}
	var broken []string
	for _, r := range results {
		dir := filepath.Join(out, string(r.Config.Strategy))
		if err := report.WriteFiles(dir, r.Report); err != nil {
			return exitWith(exitDoesNotHold, err)
		}
		if !r.OK() {
			broken = append(broken, fmt.Sprintf("%s: %s", r.Config.Strategy, strings.Join(r.Report.Broken, "; ")))
		}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "natscert drill --compare: done in %s; wrote %s/{restart,reconnect,swap}/%s\n",
		time.Since(began).Round(100*time.Millisecond), out, report.JSONFile)
	if len(broken) > 0 {
		return exitWith(exitDoesNotHold, fmt.Errorf("drill: promise broken: %s", strings.Join(broken, " | ")))
	}
	return nil
}

func verdict(r *drill.Result) string {
	if r.OK() {
		return "every promise held"
	}
	return "PROMISE BROKEN"
}

// drillError maps a drill that could not run to an exit code: interrupted
// (4) or incomplete (3).
func drillError(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, drill.ErrInterrupted) {
		return exitWith(exitInterrupted, err)
	}
	return exitWith(exitIncomplete, err)
}
