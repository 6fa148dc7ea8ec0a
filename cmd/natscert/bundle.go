package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/pki"
)

func init() { commands = append(commands, newBundleCmd) }

func newBundleCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "bundle FILE.pem [FILE.pem...]",
		Short: "Merge CA certificates into one bundle (old and new CA during an overlap)",
		Long: `Merge CA certificates from several PEM files into one bundle.

During a rotation the servers' ca_file (and the clients' roots, when the
server CA rotates) must trust the old and the new CA at the same time. This
command concatenates the inputs in order, drops duplicates, and refuses
anything that is not a PEM CA certificate, so a leaf or a truncated file
never ends up in a trust bundle. The output is written atomically.

Example: the overlap bundle for the servers' ca_file
  natscert bundle clients-ca-2025.pem clients-ca-2026.pem -o ca-overlap.pem

Without -o the bundle goes to standard output.

Exit status: 0 written, 1 an input is not PEM or holds a non-CA
certificate, 2 usage or a file that cannot be read.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var inputs [][]byte
			for _, p := range args {
				b, err := os.ReadFile(p)
				if err != nil {
					return exitWith(exitUsage, fmt.Errorf("bundle: %w", err))
				}
				inputs = append(inputs, b)
			}
			// Check each file alone first, so the error names the file.
			for i, b := range inputs {
				if _, err := pki.BundleCertificates(b); err != nil {
					return exitWith(exitDoesNotHold, fmt.Errorf("bundle: %s: %w", args[i], err))
				}
			}
			certs, err := pki.BundleCertificates(inputs...)
			if err != nil {
				return exitWith(exitDoesNotHold, fmt.Errorf("bundle: %w", err))
			}
			data := pki.EncodeCertificates(certs...)
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(data)
				return err
			}
			if err := pki.WriteFileAtomic(out, data, 0o644); err != nil {
				return exitWith(exitUsage, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: %d CA certificate(s)\n", out, len(certs))
			for i, c := range certs {
				ci := pki.Describe(c)
				fmt.Fprintf(w, "  %d  %s  cert_sha256=%s  (%s)\n", i+1, ci.Subject, ci.CertSHA256, timeLeft(ci.NotAfter))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the bundle to (default standard output)")
	return cmd
}
