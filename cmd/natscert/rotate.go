package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/natscert/natscert/report"
	"github.com/natscert/natscert/rotation"
)

func init() { commands = append(commands, newRotateCmd) }

func newRotateCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the fleet's client certificates (and the servers' own) through observed phases",
		Long: `Rotate the clients of a NATS fleet to a new client CA, or to new leaves of
the same CA (revoked by pinned_certs), one observed phase at a time:
preflight, trust both CAs, the servers' own certificates (when the plan
renews them), waves of members behind gates, converged, revoke (kicking
stragglers), and proof.

With material.new_server_ca the server CA rotates too, before the waves:
every member's roots gain the new server CA (observed in its log, or by a
restart and reconnect), the servers move to leaves of it, every member is
kicked and must come back, then the old server CA leaves the roots and a
second kick round must come back as well.

The plan file is described in docs/plan.md. Every step is journaled in the
plan's state_dir; after a crash, "resume" continues without repeating a
completed restart, and "abort" (before revoke) restores the old trust and
material (and, before the old server CA leaves the members' roots, the
servers' old certificates and the members' old roots).

Exit codes: 0 rotated and proven; 1 a gate or phase did not hold and the run
stopped (nothing is rolled back: resume or abort); 2 unreadable plan; 3
something could not be observed; 4 paused or interrupted: resume or abort.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError("rotate: name a subcommand: plan, run, resume or abort")
		},
	}
	c.AddCommand(newRotatePlanCmd(), newRotateRunCmd("run"), newRotateRunCmd("resume"), newRotateAbortCmd())
	return c
}

func loadPlanFlag(file string) (*rotation.Plan, error) {
	if file == "" {
		return nil, usageError("rotate: -f PLAN is required")
	}
	p, err := rotation.LoadPlan(file)
	if err != nil {
		return nil, exitWith(exitUsage, err)
	}
	return p, nil
}

func newRotatePlanCmd() *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan -f PLAN",
		Short: "Check a plan and show its phases, waves and budget; touches nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPlanFlag(file)
			if err != nil {
				return err
			}
			s, err := p.Schedule()
			if err != nil {
				return exitWith(exitUsage, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, s)
			}
			fmt.Fprintf(w, "plan %s: %d server(s), %d workload(s)\n", p.Name, len(p.Servers), len(p.Workloads))
			fmt.Fprintf(w, "phases: %s\n", strings.Join(s.Phases, " -> "))
			mode := "one workload after the other"
			if s.Parallel {
				mode = "workloads in parallel"
			}
			fmt.Fprintf(w, "waves (%s):\n", mode)
			for _, wv := range s.Waves {
				fmt.Fprintf(w, "  %s wave %d (%s): %s\n", wv.Workload, wv.Index, wv.Mode, strings.Join(wv.Members, ", "))
			}
			b := s.Budget
			fmt.Fprintf(w, "budget: %s (worst case %s) over %d wave(s)", b.Total, b.WorstTotal, b.Waves)
			if b.SLA > 0 {
				verdict := "fits"
				if !b.Fits {
					verdict = "does NOT fit"
				}
				fmt.Fprintf(w, "; SLA %s: %s", b.SLA, verdict)
			}
			fmt.Fprintln(w)
			if !b.Fits {
				return exitWith(exitDoesNotHold, fmt.Errorf("rotate plan: the budget %s exceeds the SLA %s", b.Total, b.SLA))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "plan file (YAML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the schedule as JSON")
	return cmd
}

type rotateFlags struct {
	file, out, onGate string
	asJSON            bool
}

func newRotateRunCmd(verb string) *cobra.Command {
	var f rotateFlags
	short := "Run the rotation the plan describes"
	if verb == "resume" {
		short = "Resume an interrupted or paused rotation from its journal"
	}
	cmd := &cobra.Command{
		Use:   verb + " -f PLAN",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPlanFlag(f.file)
			if err != nil {
				return err
			}
			switch rotation.GateAction(f.onGate) {
			case "":
			case rotation.GatePause, rotation.GateStop, rotation.GateAbort:
				p.OnGateFailure = rotation.GateAction(f.onGate)
			default:
				return usageError("rotate: --on-gate-failure %q: want pause or stop", f.onGate)
			}
			r, err := newRotateRunner(cmd, p, f)
			if err != nil {
				return err
			}
			var res *rotation.Result
			if verb == "resume" {
				res, err = r.Resume(cmd.Context())
			} else {
				res, err = r.Run(cmd.Context())
			}
			return finishRotation(cmd, p, f, res, err)
		},
	}
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "plan file (YAML)")
	cmd.Flags().StringVar(&f.out, "out", "", "write report.json and report.html into this directory (default: the plan's state directory)")
	cmd.Flags().StringVar(&f.onGate, "on-gate-failure", "", "pause or stop (abort: an older name of stop; neither rolls back); default: the plan's, else pause on a terminal and stop otherwise")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print events as JSON lines, then the result")
	return cmd
}

func newRotateAbortCmd() *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "abort -f PLAN",
		Short: "Roll back a rotation that has not reached revoke: old trust and material",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPlanFlag(f.file)
			if err != nil {
				return err
			}
			r, err := newRotateRunner(cmd, p, f)
			if err != nil {
				return err
			}
			res, err := r.Abort(cmd.Context())
			return finishRotation(cmd, p, f, res, err)
		},
	}
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "plan file (YAML)")
	cmd.Flags().StringVar(&f.out, "out", "", "write report.json and report.html into this directory (default: the plan's state directory)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print events as JSON lines, then the result")
	return cmd
}

func newRotateRunner(cmd *cobra.Command, p *rotation.Plan, f rotateFlags) (*rotation.Runner, error) {
	out := cmd.OutOrStdout()
	var mu sync.Mutex
	events := func(e rotation.Event) {
		mu.Lock()
		defer mu.Unlock()
		if f.asJSON {
			_ = writeJSONLine(out, e)
			return
		}
		if line := eventLine(e); line != "" {
			fmt.Fprintln(out, line)
		}
	}
	opts := []rotation.Option{rotation.WithEvents(events), rotation.WithLogger(discardLogger())}
	interactive := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
	if p.OnGateFailure == "" {
		if interactive {
			p.OnGateFailure = rotation.GatePause
		} else {
			p.OnGateFailure = rotation.GateStop
		}
	}
	if p.OnGateFailure == rotation.GatePause && interactive {
		opts = append(opts, rotation.WithGateFailure(promptGate(os.Stdin, cmd.ErrOrStderr())))
	}
	r, err := rotation.New(p, opts...)
	if err != nil {
		return nil, exitWith(exitUsage, err)
	}
	return r, nil
}

// promptGate asks the operator what to do about a failed gate. Leaving
// the prompt (end of input, interrupt) pauses: the run exits 4.
func promptGate(in io.Reader, w io.Writer) func(context.Context, rotation.GateFailure) rotation.GateDecision {
	br := bufio.NewReader(in)
	return func(ctx context.Context, f rotation.GateFailure) rotation.GateDecision {
		fmt.Fprintf(w, "\ngate failed: workload %s wave %d: %s\n", f.Workload, f.Wave, f.Reason)
		fmt.Fprint(w, "[r]etry the gate, [s]top (exit 1), or [p]ause (exit 4)? Neither rolls back: resume or abort later. ")
		answer := make(chan string, 1)
		go func() { // ends with the process when the operator never answers
			s, _ := br.ReadString('\n')
			answer <- strings.TrimSpace(strings.ToLower(s))
		}()
		select {
		case <-ctx.Done():
			return rotation.DecidePause
		case s := <-answer:
			switch s {
			case "r", "retry":
				return rotation.DecideRetry
			case "s", "stop":
				return rotation.DecideStop
			}
			return rotation.DecidePause
		}
	}
}

func eventLine(e rotation.Event) string {
	ts := e.Time.Format("15:04:05.000")
	status := "ok"
	if !e.OK {
		status = "FAILED"
	}
	switch e.Kind {
	case rotation.PhaseStarted:
		return fmt.Sprintf("%s phase %s: started", ts, e.Phase)
	case rotation.PhaseEnded:
		return fmt.Sprintf("%s phase %s: %s: %s", ts, e.Phase, status, e.Detail)
	case rotation.WaveStarted:
		return fmt.Sprintf("%s   %s wave %d: started (%s)", ts, e.Workload, e.Wave, e.Detail)
	case rotation.WaveGated:
		return fmt.Sprintf("%s   %s wave %d: gate holds: %s", ts, e.Workload, e.Wave, e.Detail)
	case rotation.GateFailed:
		return fmt.Sprintf("%s   %s wave %d: GATE FAILED: %s", ts, e.Workload, e.Wave, e.Detail)
	case rotation.MemberDelivered, rotation.MemberRestarted:
		return fmt.Sprintf("%s     %s %s %s", ts, e.Member, strings.TrimPrefix(string(e.Kind), "member_"), e.Detail)
	case rotation.ConnKicked:
		return fmt.Sprintf("%s     kicked %s on %s: %s", ts, e.Member, e.Server, e.Detail)
	case rotation.ServerReloaded:
		return fmt.Sprintf("%s     %s reloaded: %s %s", ts, e.Server, status, e.Detail)
	case rotation.StepSkipped:
		return fmt.Sprintf("%s   skipped %s %s %s: %s", ts, e.Phase, e.Workload, e.Member, e.Detail)
	}
	return ""
}

// finishRotation prints the outcome, writes the report, and maps the error
// to the exit code.
func finishRotation(cmd *cobra.Command, p *rotation.Plan, f rotateFlags, res *rotation.Result, err error) error {
	out := cmd.OutOrStdout()
	if res != nil {
		if f.asJSON {
			_ = writeJSONLine(out, map[string]any{"kind": "result", "result": res})
		} else {
			fmt.Fprintf(out, "rotation %s: %s\n", res.Plan, res.Outcome)
			for _, pr := range res.Proof {
				fmt.Fprintf(out, "  proof %s: old %s, new %s, ok=%v\n", pr.Server, pr.Old.Outcome, pr.New.Outcome, pr.OK)
			}
		}
		dir := f.out
		if dir == "" {
			dir = p.StateDirPath()
		}
		if werr := report.WriteFiles(dir, rotationReport(p, res)); werr != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "natscert:", werr)
		} else if !f.asJSON {
			fmt.Fprintf(out, "report: %s\n", filepath.Join(dir, report.HTMLFile))
		}
	}
	if err == nil {
		return nil
	}
	return exitWith(rotationExitCode(err), err)
}

// rotationExitCode maps a rotation error to the exit codes of DESIGN.md.
func rotationExitCode(err error) int {
	switch {
	case errors.Is(err, rotation.ErrPlan), errors.Is(err, rotation.ErrInProgress), errors.Is(err, rotation.ErrNotResumable):
		return exitUsage
	case errors.Is(err, rotation.ErrPaused), errors.Is(err, rotation.ErrInterrupted):
		return exitInterrupted
	case errors.Is(err, rotation.ErrIncomplete):
		return exitIncomplete
	}
	return exitDoesNotHold
}

// rotationReport converts a rotation result into the shared report model.
func rotationReport(p *rotation.Plan, res *rotation.Result) *report.Report {
	r := report.FromRotation(res)
	r.Setup["servers"] = len(p.Servers)
	r.Setup["workloads"] = len(p.Workloads)
	return r
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// discardLogger keeps the runner's own log off the output: progress is
// printed from events.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
