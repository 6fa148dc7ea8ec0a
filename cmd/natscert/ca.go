package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/pki"
)

func init() { commands = append(commands, newCACmd) }

func newCACmd() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Create certificate authorities for drills, tests and staging",
		Long: `Create certificate authorities.

A rotation needs a new CA next to the old one, for rehearsals at least.
Production CAs usually come from your PKI; these are for drills, tests and
staging set-ups.

Example:
  natscert ca new --cn "clients CA 2026" --out-cert ca.pem --out-key ca-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("ca: name a subcommand, e.g. natscert ca new --help")
		},
	}
	ca.AddCommand(newCANewCmd())
	return ca
}

func newCANewCmd() *cobra.Command {
	var (
		cn, outCert, outKey, keyType string
		validFor                     = validityFlag(10 * 365 * 24 * time.Hour)
		force                        bool
	)
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create a self-signed CA and write its certificate and key",
		Long: `Create a self-signed CA and write its certificate (mode 0644) and private
key (mode 0600). Files are written atomically: a reader sees the old file or
the new one, never half of one. Existing files are kept unless --force.

Example: a new client CA for a rotation, valid for five years
  natscert ca new --cn "clients CA 2026" --valid-for 1825d \
    --out-cert clients-ca-2026.pem --out-key clients-ca-2026-key.pem

Then issue leaves with "natscert cert new" and merge the old and new CA
into one ca_file with "natscert bundle".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cn == "" || outCert == "" || outKey == "" {
				return usageError("ca new: --cn, --out-cert and --out-key are required")
			}
			kt, err := parseKeyTypeFlag(keyType)
			if err != nil {
				return err
			}
			if err := refuseOverwrite(force, outCert, outKey); err != nil {
				return err
			}
			ca, err := pki.NewCA(cn, pki.WithKeyType(kt), pki.WithLifetime(time.Duration(validFor)))
			if err != nil {
				return exitWith(exitDoesNotHold, err)
			}
			if err := ca.WriteFiles(outCert, outKey); err != nil {
				return exitWith(exitUsage, err)
			}
			printCertInfo(cmd.OutOrStdout(), pki.Describe(ca.Cert))
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (certificate) and %s (private key, 0600)\n", outCert, outKey)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cn, "cn", "", "common name of the CA (required)")
	f.StringVar(&outCert, "out-cert", "", "file to write the CA certificate to (required)")
	f.StringVar(&outKey, "out-key", "", "file to write the CA private key to (required)")
	f.StringVar(&keyType, "key-type", string(pki.KeyECDSAP256), keyTypeHelp)
	f.Var(&validFor, "valid-for", "lifetime, a Go duration or whole days (365d)")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

const keyTypeHelp = "key algorithm: ecdsa-p256, rsa-2048 or ed25519"

// validityFlag is a lifetime flag that also takes whole days ("90d"),
// because certificate lifetimes are thought of in days, not hours.
type validityFlag time.Duration

func (v *validityFlag) String() string {
	d := time.Duration(*v)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (v *validityFlag) Set(s string) error {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return fmt.Errorf("%q: want a Go duration (720h) or whole days (30d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("%q: want a Go duration (720h) or whole days (30d)", s)
		}
	}
	if d <= 0 {
		return fmt.Errorf("%q: want a positive lifetime", s)
	}
	*v = validityFlag(d)
	return nil
}

func (v *validityFlag) Type() string { return "duration" }

// parseKeyTypeFlag checks --key-type against what pki can generate.
func parseKeyTypeFlag(s string) (pki.KeyType, error) {
	switch kt := pki.KeyType(s); kt {
	case pki.KeyECDSAP256, pki.KeyRSA2048, pki.KeyEd25519:
		return kt, nil
	}
	return "", usageError("--key-type %q: want ecdsa-p256, rsa-2048 or ed25519", s)
}

// refuseOverwrite keeps existing files, above all private keys, unless the
// operator asked for it: a CA key overwritten by mistake cannot be undone.
func refuseOverwrite(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return usageError("%s exists; use --force to overwrite it", p)
		}
	}
	return nil
}

// readErrorCode maps a failure to load input: a file that cannot be read
// at all is exit 2, material that was read but is not valid is exit 1.
func readErrorCode(err error) int {
	var pe *fs.PathError
	if errors.As(err, &pe) || errors.Is(err, pki.ErrUnreadable) {
		return exitUsage
	}
	return exitDoesNotHold
}

// printCertInfo writes a short description of a certificate for people.
func printCertInfo(w io.Writer, ci pki.CertInfo) {
	fmt.Fprintf(w, "subject      %s\n", ci.Subject)
	fmt.Fprintf(w, "issuer       %s\n", ci.Issuer)
	fmt.Fprintf(w, "valid        %s .. %s (%s)\n", ci.NotBefore.Format(time.RFC3339), ci.NotAfter.Format(time.RFC3339), timeLeft(ci.NotAfter))
	if ci.IsCA {
		fmt.Fprintf(w, "ca           yes\n")
	}
	if len(ci.Usage) > 0 {
		fmt.Fprintf(w, "usage        %s\n", strings.Join(ci.Usage, ", "))
	}
	var sans []string
	for _, s := range ci.DNSNames {
		sans = append(sans, "dns:"+s)
	}
	for _, s := range ci.IPs {
		sans = append(sans, "ip:"+s)
	}
	for _, s := range ci.URIs {
		sans = append(sans, "uri:"+s)
	}
	for _, s := range ci.Emails {
		sans = append(sans, "email:"+s)
	}
	if len(sans) > 0 {
		fmt.Fprintf(w, "sans         %s\n", strings.Join(sans, ", "))
	}
	fmt.Fprintf(w, "cert_sha256  %s\n", ci.CertSHA256)
	fmt.Fprintf(w, "spki_sha256  %s\n", ci.SPKISHA256)
}

// timeLeft says how long until t, in days when that is long.
func timeLeft(t time.Time) string {
	left := time.Until(t)
	switch {
	case left <= 0:
		return "expired"
	case left >= 48*time.Hour:
		return fmt.Sprintf("%dd left", int(left/(24*time.Hour)))
	}
	return left.Round(time.Minute).String() + " left"
}
