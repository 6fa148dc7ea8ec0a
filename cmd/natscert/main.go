// Command natscert plans, runs, verifies and rehearses certificate rotations
// for NATS mutual TLS. See README.md and docs/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every command (DESIGN.md).
const (
	exitOK          = 0 // done, and what was asked holds
	exitDoesNotHold = 1 // checked, and it does not hold
	exitUsage       = 2 // usage error, or input that cannot be read at all
	exitIncomplete  = 3 // something that had to be observed could not be
	exitInterrupted = 4 // a rotation stopped mid-way
)

// exitError carries an exit code out of a command. A nil err with a code
// means the command already printed what it had to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith returns an error that makes main exit with code; err may be nil
// when the command has already reported the outcome.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// usageError marks bad flags or arguments (exit 2).
func usageError(format string, args ...any) error {
	return exitWith(exitUsage, fmt.Errorf(format, args...))
}

// commands registered by the files of this package, in help order.
var commands []func() *cobra.Command

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "natscert",
		Short: "Rotate NATS mutual-TLS certificates without an outage",
		Long: `natscert plans, runs, verifies and rehearses certificate rotations for
NATS mutual TLS.

Exit codes, for every command:
  0  done, and what was asked holds
  1  checked, and it does not hold (findings, not converged, SLA missed)
  2  usage error, or input that cannot be read at all
  3  incomplete: something that had to be observed could not be
  4  interrupted or paused: resume or abort the rotation`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitWith(exitUsage, err)
	})
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to stop cleanly (a rotation records
	// where it is); after it, signals are no longer caught, so a second ^C
	// ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and maps its error to an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "natscert:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "natscert:", err)
	// cobra's own argument and unknown-command errors are usage errors.
	return exitUsage
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
