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
		Long: `Rehearse a rotation of the client CA on an embedded NATS cluster (mTLS,
monitoring on loopback) with simulated control-plane clients under steady
traffic, and measure what it costs.

Each client has its own certificate and name; a publisher fans numbered
messages out to every client and a requester sends requests to the
clients' queue group. The rotation runs through the same state machine as
"natscert rotate": trust both CAs, new leaves in waves behind gates,
converged, revoke, proof. Every message is accounted for exactly: lost,
duplicated, out of order.

Strategies and what each promises:
  swap       make-before-break: zero lost messages, zero failed requests,
             every member on new material, proof passed
  reconnect  members reconnect with the new files: every member on new
             material, proof passed; losses are measured, not promised
  restart    today's approach, members restarted in waves: every member on
             new material, proof passed; losses are measured, not promised

Writes report.json and report.html to --out (with --compare, one
directory per strategy). Exit 0 when every promise of the strategy held,
1 when one did not (named), 3 when the drill could not run, 4 when
interrupted.`,
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
			stderr := cmd.ErrOrStderr()
			live := false
			if f, ok := stderr.(*os.File); ok {
				live = term.IsTerminal(int(f.Fd()))
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
	f.DurationVar(&cfg.Steady, "steady", drill.DefaultSteady, "traffic before and after the rotation")
	f.DurationVar(&cfg.Pause, "pause", drill.DefaultPause, "pause between waves")
	f.BoolVar(&cfg.Processes, "processes", false, "run clients as worker processes instead of goroutines")
	f.StringVar(&cfg.WorkerPath, "worker", "", "worker binary for --processes (default: next to natscert, or built into the user cache)")
	f.Int64Var(&cfg.Seed, "seed", 1, "seed of the run's random choices (which clients share a wave)")
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
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return exitWith(exitInterrupted, err)
	}
	return exitWith(exitIncomplete, err)
}
