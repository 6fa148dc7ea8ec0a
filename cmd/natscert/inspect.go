package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/pki"
)

func init() { commands = append(commands, newInspectCmd) }

func newInspectCmd() *cobra.Command {
	var (
		in         pki.InspectInput
		role       string
		warnWithin time.Duration
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "inspect --cert FILE --key FILE [--issuer BUNDLE] [--roots BUNDLE]",
		Short: "Check a certificate, its key and its CA bundles before they are used",
		Long: `Check one set of TLS material before a process loads it, and say exactly
what is wrong with it.

Checks: the private key belongs to the certificate; the certificate is inside
its validity window, give or take --clock-skew (and warns when it expires
within --warn-within); its extended key usage fits --role; a server
certificate has SANs; the key file is not readable by group or others (a
process loading the files does not check that); with --issuer, the chain verifies against
the CAs that issued it; with --roots, the bundle used to verify the peer
holds only CA certificates, all valid. Every finding has a stable code
(key-mismatch, expired, unknown-issuer, wrong-usage, bundle-not-ca, ...),
a severity and a sentence.

Example: a client's new material before a rotation wave
  natscert inspect --cert orders-7.pem --key orders-7-key.pem \
    --issuer clients-ca-2026.pem --roots servers-ca.pem --role client

Exit status: 0 clean (warnings allowed), 1 at least one error finding
(including a file that was read but is not valid material), 2 usage or a
file that cannot be read at all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in.CertFile == "" || in.KeyFile == "" {
				return usageError("inspect: --cert and --key are required")
			}
			r, err := pki.ParseRole(role)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			in.Role, in.WarnWithin = r, warnWithin
			rep, err := pki.Inspect(in)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := struct {
					Clean bool `json:"clean"`
					*pki.Report
				}{rep.Clean(), rep}
				if err := writeJSON(w, out); err != nil {
					return err
				}
			} else {
				if rep.Leaf != nil {
					printCertInfo(w, *rep.Leaf)
				}
				for _, f := range rep.Findings {
					fmt.Fprintln(w, f)
				}
				fmt.Fprintln(w, inspectSummary(rep.Findings))
			}
			if !rep.Clean() {
				return exitWith(exitDoesNotHold, nil)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.CertFile, "cert", "", "certificate file, leaf first (required)")
	f.StringVar(&in.KeyFile, "key", "", "private key file (required)")
	f.StringVar(&in.IssuerFile, "issuer", "", "CA bundle that issued the certificate")
	f.StringVar(&in.RootsFile, "roots", "", "CA bundle this process verifies its peer with")
	f.StringVar(&role, "role", string(pki.RoleClient), "what the certificate is for: client or server")
	f.DurationVar(&warnWithin, "warn-within", 720*time.Hour, "warn about certificates that expire within this")
	f.DurationVar(&in.Skew, "clock-skew", pki.DefaultClockSkew, "tolerate clocks that differ by this much, as a process loading the files does")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// inspectSummary is the closing line: the verdict, then the counts.
func inspectSummary(fs pki.Findings) string {
	var errs, warns int
	for _, f := range fs {
		switch f.Severity {
		case pki.SeverityError:
			errs++
		case pki.SeverityWarning:
			warns++
		}
	}
	verdict := "clean"
	if errs > 0 {
		verdict = "NOT USABLE"
	}
	return fmt.Sprintf("result: %s (%d errors, %d warnings)", verdict, errs, warns)
}
