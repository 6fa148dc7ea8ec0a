package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/budget"
)

func init() { commands = append(commands, newBudgetCmd) }

func newBudgetCmd() *cobra.Command {
	var (
		in     budget.Input
		jitter time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Estimate how long a rotation in waves takes, and whether it fits an SLA",
		Long: `Estimate how long a rotation takes when members restart in waves.

The simple model, as operators plan it:
  cycle       = reconnect wait + handshake timeout
  wave_window = 2 x cycle
  waves       = ceil(pods / max-unavailable)
  total       = waves x (restart time + wave_window + pause)

The worst case, as nats.go really behaves: a client tries every known server
once per pass (each failing dial may take the whole handshake timeout), then
sleeps the reconnect wait plus up to --tls-jitter (1s by default for TLS):
  worst_cycle = servers x handshake timeout + reconnect wait + tls jitter
Plan with the first, and make sure the second still fits.

Example: 24 pods, 3 at a time, nats.go defaults, a 2 minute SLA
  natscert budget --reconnect-wait 2s --handshake-timeout 2s \
    --pods 24 --max-unavailable 3 --sla 2m

prints
  pods=24 max_unavailable=3 ...
  cycle=4s wave_window=8s
  waves=8
  total=1m4s
  worst_cycle=5s worst_wave_window=10s worst_total=1m20s
  sla=2m0s fits=true worst_fits=true

Exit status: 0 estimated (and fits the SLA when one is given), 1 the total
does not fit the SLA, 2 usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A zero flag means "no jitter"; budget reads zero as "default".
			in.Jitter = jitter
			if jitter == 0 {
				in.Jitter = -1
			}
			est, err := budget.Compute(in)
			if errors.Is(err, budget.ErrInput) {
				return exitWith(exitUsage, err)
			} else if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, est); err != nil {
					return err
				}
			} else {
				printBudget(w, in, jitter, est)
			}
			if !est.Fits {
				return exitWith(exitDoesNotHold, fmt.Errorf("budget: total %s does not fit the SLA of %s", est.Total, est.SLA))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&in.ReconnectWait, "reconnect-wait", 2*time.Second, "clients' wait between reconnect passes (nats.ReconnectWait)")
	f.DurationVar(&in.HandshakeTimeout, "handshake-timeout", 2*time.Second, "longest a failed dial takes (nats.Timeout, server tls timeout)")
	f.IntVar(&in.Members, "pods", 24, "members (pods, processes) to rotate")
	f.IntVar(&in.MaxUnavailable, "max-unavailable", 3, "members restarted at once, per wave")
	f.DurationVar(&in.RestartTime, "restart-time", 0, "time a member takes to come back before its first dial")
	f.DurationVar(&in.Pause, "pause", 0, "pause between waves")
	f.IntVar(&in.Servers, "servers", 1, "server URLs a client knows (worst case: one wait per pass over all)")
	f.DurationVar(&jitter, "tls-jitter", budget.DefaultTLSJitter, "upper bound of nats.go's TLS reconnect jitter (nats.ReconnectJitter)")
	f.DurationVar(&in.SLA, "sla", 0, "time the rotation must fit in; 0 for none")
	f.BoolVar(&asJSON, "json", false, "print the estimate as JSON (durations in milliseconds)")
	return cmd
}

// printBudget writes the inputs and figures as key=value tokens, one
// concern a line, so that people read them and scripts grep them.
func printBudget(w io.Writer, in budget.Input, jitter time.Duration, e budget.Estimate) {
	fmt.Fprintf(w, "pods=%d max_unavailable=%d reconnect_wait=%s handshake_timeout=%s restart_time=%s pause=%s servers=%d tls_jitter=%s\n",
		in.Members, in.MaxUnavailable, in.ReconnectWait, in.HandshakeTimeout, in.RestartTime, in.Pause, max(in.Servers, 1), jitter)
	fmt.Fprintf(w, "cycle=%s wave_window=%s\n", e.Cycle, e.WaveWindow)
	fmt.Fprintf(w, "waves=%d\n", e.Waves)
	fmt.Fprintf(w, "total=%s\n", e.Total)
	fmt.Fprintf(w, "worst_cycle=%s worst_wave_window=%s worst_total=%s\n", e.WorstCycle, e.WorstWaveWindow, e.WorstTotal)
	if e.SLA > 0 {
		fmt.Fprintf(w, "sla=%s fits=%t worst_fits=%t\n", e.SLA, e.Fits, e.WorstFits)
	}
}
