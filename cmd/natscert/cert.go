package main

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/pki"
)

func init() { commands = append(commands, newCertCmd) }

func newCertCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cert",
		Short: "Issue client and server certificates from a CA",
		Long: `Issue leaf certificates signed by a CA.

Leaves carry the extended key usage of their role: a client certificate
(clientAuth) for NATS clients, a server certificate (serverAuth) for
nats-server. Use them for drills, tests and staging.

Example:
  natscert cert new --ca-cert ca.pem --ca-key ca-key.pem --role client \
    --cn orders-7 --out-cert orders-7.pem --out-key orders-7-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("cert: name a subcommand, e.g. natscert cert new --help")
		},
	}
	c.AddCommand(newCertNewCmd())
	return c
}

func newCertNewCmd() *cobra.Command {
	var (
		caCert, caKey, role, cn, keyType, outCert, outKey string
		dns, ips, uris, emails                            []string
		validFor                                          = validityFlag(365 * 24 * time.Hour)
		force                                             bool
	)
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Issue a leaf certificate signed by a CA and write it with its key",
		Long: `Issue a leaf certificate signed by a CA, and write the certificate (0644)
and its new private key (0600) atomically. The key is written first.

--role decides the extended key usage: client (clientAuth) or server
(serverAuth). A server certificate needs the names clients dial as subject
alternative names (--dns, --ip). SAN flags repeat or take comma lists.

Examples:
  # a client certificate for one control-plane process, valid 90 days
  natscert cert new --ca-cert ca.pem --ca-key ca-key.pem --role client \
    --cn orders-7 --valid-for 90d --out-cert orders-7.pem --out-key orders-7-key.pem

  # a server certificate for a nats-server pod
  natscert cert new --ca-cert servers-ca.pem --ca-key servers-ca-key.pem \
    --role server --cn nats-0 --dns nats-0.nats,nats --ip 127.0.0.1 \
    --out-cert nats-0.pem --out-key nats-0-key.pem

Exit status: 0 written, 1 the CA files were read but are not a usable CA
(not a CA, key does not match), 2 usage or a file that cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caCert == "" || caKey == "" || cn == "" || outCert == "" || outKey == "" {
				return usageError("cert new: --ca-cert, --ca-key, --cn, --out-cert and --out-key are required")
			}
			r, err := pki.ParseRole(role)
			if err != nil {
				return exitWith(exitUsage, err)
			}
			kt, err := parseKeyTypeFlag(keyType)
			if err != nil {
				return err
			}
			opts := []pki.Option{pki.WithKeyType(kt), pki.WithLifetime(time.Duration(validFor))}
			if len(dns) > 0 {
				opts = append(opts, pki.WithDNSNames(dns...))
			}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usageError("--ip %q: not an IP address", s)
				}
				opts = append(opts, pki.WithIPs(ip))
			}
			for _, s := range uris {
				u, err := url.Parse(s)
				if err != nil || u.Scheme == "" {
					return usageError("--uri %q: want an absolute URI such as spiffe://example.org/orders", s)
				}
				opts = append(opts, pki.WithURIs(u))
			}
			if len(emails) > 0 {
				opts = append(opts, pki.WithEmails(emails...))
			}
			if err := refuseOverwrite(force, outCert, outKey); err != nil {
				return err
			}
			ca, err := pki.LoadCA(caCert, caKey)
			if err != nil {
				return exitWith(readErrorCode(err), err)
			}
			leaf, err := ca.Issue(cn, r, opts...)
			if err != nil {
				return exitWith(exitDoesNotHold, err)
			}
			if err := leaf.WriteFiles(outCert, outKey); err != nil {
				return exitWith(exitUsage, err)
			}
			w := cmd.OutOrStdout()
			printCertInfo(w, pki.Describe(leaf.Cert))
			fmt.Fprintf(w, "wrote %s (certificate) and %s (private key, 0600)\n", outCert, outKey)
			if r == pki.RoleServer && len(dns)+len(ips)+len(uris) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "natscert: warning: a server certificate with no --dns or --ip is rejected by clients that verify host names")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caCert, "ca-cert", "", "CA certificate that signs (required)")
	f.StringVar(&caKey, "ca-key", "", "the CA's private key (required)")
	f.StringVar(&role, "role", string(pki.RoleClient), "what the leaf is for: client or server")
	f.StringVar(&cn, "cn", "", "common name of the leaf (required)")
	f.StringSliceVar(&dns, "dns", nil, "DNS subject alternative names")
	f.StringSliceVar(&ips, "ip", nil, "IP subject alternative names")
	f.StringSliceVar(&uris, "uri", nil, "URI subject alternative names (SPIFFE IDs, for example)")
	f.StringSliceVar(&emails, "email", nil, "e-mail subject alternative names")
	f.Var(&validFor, "valid-for", "lifetime, a Go duration or whole days (90d)")
	f.StringVar(&keyType, "key-type", string(pki.KeyECDSAP256), keyTypeHelp)
	f.StringVar(&outCert, "out-cert", "", "file to write the certificate to (required)")
	f.StringVar(&outKey, "out-key", "", "file to write the private key to (required)")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}
