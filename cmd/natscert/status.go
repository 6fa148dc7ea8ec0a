package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/fleet"
)

func init() { commands = append(commands, newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var (
		monitors             []string
		sysURL               string
		auth                 fleet.SystemAuth
		oldArgs, newArgs     []string
		leafArgs             []string
		expectMembers        string
		expectServers        string
		settle, timeout      time.Duration
		strict, wait, asJSON bool
		pageSize             int
	)
	cmd := &cobra.Command{
		Use:   "status (--monitor URL[,URL...] | --system-url URL ...) [--old ...] [--new ...]",
		Short: "Show which certificate every client presents, as the servers see it; judge convergence",
		Long: `Ask the NATS servers which certificate every client connection presented
(/connz?auth=true, tls_peer_certs), count them per server as new, old,
unknown (neither) or none (no certificate), and judge whether the fleet has
converged on the new material.

Where the view comes from, one of:
  --monitor URL[,URL...]   the servers' HTTP monitoring endpoints; every URL
                           must answer
  --system-url URL         one client URL of the cluster; every server is asked
                           through the system account ($SYS.REQ.SERVER.PING);
                           use --expect-servers so a missing server is noticed

What old and new mean (--old, --new; repeat or comma-separate): PEM files,
bundles, directories of PEM files, or hex sha256 fingerprints (cert_sha256 or
spki_sha256). A leaf certificate matches exactly. A CA certificate matches the
leaves it issued among those you supply (in --old, --new or --leaves): the
servers report only fingerprints, never the issuer, so a leaf you do not
supply stays "unknown".

Members are counted, not rows: a client is known by its connection name, or
by its leaf fingerprint when it sets no name. A named client seen twice (it
reconnected, perhaps to another server) counts once, the newest connection
winning. System-account connections (this command's own among them) are
listed but never counted. Pages of connz are separate snapshots, so the
servers are scanned until two scans agree.

Converged: every expected member presents new material, none presents old,
every server answered, and the view has not changed for --settle. --strict
also refuses unknown certificates and connections without one.

Examples:
  # what does each server see right now?
  natscert status --monitor http://nats-1:8222,http://nats-2:8222,http://nats-3:8222

  # has the fleet moved from the 2025 client CA to the 2026 one?
  natscert status --monitor http://nats-1:8222 \
    --old clients-ca-2025.pem --new clients-ca-2026.pem --leaves /etc/fleet/leaves/

  # the whole cluster through the system account, waiting up to 10 minutes
  natscert status --system-url tls://nats-1:4222 --system-user sys --system-password "$PW" \
    --system-cert sys.pem --system-key sys-key.pem --system-ca server-ca.pem \
    --expect-servers 3 --expect-members orders-1,orders-2,billing-1 \
    --old old/ --new new/ --wait --timeout 10m

  # in a script
  natscert status --monitor http://nats-1:8222 --new new/ --json | jq '.counts.old'

Exit status: 0 converged (or, without --old/--new, a complete view); 1 not
converged, or not within --timeout; 2 usage; 3 incomplete: a server or an
expected member could not be seen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			monitors = splitList(monitors)
			if (len(monitors) == 0) == (sysURL == "") {
				return usageError("status: give either --monitor or --system-url")
			}
			if len(monitors) > 0 && (auth != fleet.SystemAuth{}) {
				return usageError("status: --system-* flags need --system-url, not --monitor")
			}
			var opts []fleet.Option
			for _, m := range []struct {
				args []string
				opt  func(*fleet.Material) fleet.Option
				flag string
			}{{oldArgs, fleet.WithOld, "--old"}, {newArgs, fleet.WithNew, "--new"}} {
				if args := splitList(m.args); len(args) > 0 {
					mat, err := fleet.ReadMaterial(args...)
					if err != nil {
						return usageError("status: %s: %w", m.flag, err)
					}
					opts = append(opts, m.opt(mat))
				}
			}
			if args := splitList(leafArgs); len(args) > 0 {
				mat, err := fleet.ReadMaterial(args...)
				if err != nil {
					return usageError("status: --leaves: %w", err)
				}
				opts = append(opts, fleet.WithKnownLeaves(mat.Leaves()...))
			}
			if expectServers != "" {
				if n, err := strconv.Atoi(expectServers); err == nil {
					opts = append(opts, fleet.WithExpectServers(n))
				} else {
					opts = append(opts, fleet.WithExpectServerNames(splitList([]string{expectServers})...))
				}
			}
			if expectMembers != "" {
				if n, err := strconv.Atoi(expectMembers); err == nil {
					opts = append(opts, fleet.WithExpectMemberCount(n))
				} else {
					for _, name := range splitList([]string{expectMembers}) {
						opts = append(opts, fleet.WithExpectMembers(fleet.Member{Name: name}))
					}
				}
			}
			if strict {
				opts = append(opts, fleet.WithStrict())
			}
			opts = append(opts, fleet.WithSettle(settle), fleet.WithPageSize(pageSize))

			if err := checkSystemFiles(auth); err != nil {
				return err
			}
			var src fleet.Source
			if len(monitors) > 0 {
				src = fleet.Monitor(monitors...)
			} else {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				nc, err := fleet.DialSystem(dctx, sysURL, auth)
				cancel()
				if err != nil {
					return exitWith(exitIncomplete, err)
				}
				defer nc.Close()
				src = fleet.System(nc)
			}
			obs, err := fleet.New(src, opts...)
			if err != nil {
				return exitWith(exitUsage, err)
			}

			var st *fleet.Status
			if wait {
				wctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				st, err = obs.Wait(wctx, func(s *fleet.Status) {
					if !asJSON {
						fmt.Fprintln(cmd.ErrOrStderr(), progressLine(s))
					}
				})
			} else {
				st, err = obs.Check(ctx)
			}
			if st == nil {
				return exitWith(exitIncomplete, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, st); err != nil {
					return err
				}
			} else {
				printStatus(w, st)
			}
			switch {
			case st.Verdict == fleet.Incomplete || errors.Is(err, fleet.ErrIncomplete):
				return exitWith(exitIncomplete, nil)
			case st.Verdict == fleet.NotConverged || err != nil:
				return exitWith(exitDoesNotHold, nil)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&monitors, "monitor", nil, "monitoring URLs of the servers, comma-separated or repeated")
	f.StringVar(&sysURL, "system-url", "", "a client URL of the cluster, to ask every server through the system account")
	f.StringVar(&auth.User, "system-user", "", "system account user")
	f.StringVar(&auth.Password, "system-password", "", "system account password")
	f.StringVar(&auth.CredsFile, "system-creds", "", "system account credentials file, instead of user/password")
	f.StringVar(&auth.CertFile, "system-cert", "", "client certificate for the system connection")
	f.StringVar(&auth.KeyFile, "system-key", "", "client key for the system connection")
	f.StringVar(&auth.CAFile, "system-ca", "", "CA bundle that verifies the servers")
	f.StringSliceVar(&oldArgs, "old", nil, "old material: PEM files, bundles, directories or sha256 fingerprints")
	f.StringSliceVar(&newArgs, "new", nil, "new material: PEM files, bundles, directories or sha256 fingerprints")
	f.StringSliceVar(&leafArgs, "leaves", nil, "known leaf certificates, classified by the CA in --old/--new that issued them")
	f.StringVar(&expectMembers, "expect-members", "", "members that must be present: a count, or connection names comma-separated")
	f.StringVar(&expectServers, "expect-servers", "", "servers that must answer: a count, or server names comma-separated")
	f.DurationVar(&settle, "settle", fleet.DefaultSettle, "how long the view must stay unchanged before it counts as converged")
	f.BoolVar(&strict, "strict", false, "also refuse unknown certificates and connections without one")
	f.BoolVar(&wait, "wait", false, "look again every half second until converged or --timeout")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, how long to wait")
	f.BoolVar(&asJSON, "json", false, "print the status, with every connection, as JSON")
	f.IntVar(&pageSize, "page-size", fleet.DefaultPageSize, "connections per connz page")
	return cmd
}

// checkSystemFiles reads the system connection's files before any dial:
// a file that cannot be read is a usage error (exit 2), where a failed
// dial would read as an unreachable cluster (exit 3).
func checkSystemFiles(a fleet.SystemAuth) error {
	if (a.CertFile == "") != (a.KeyFile == "") {
		return usageError("status: --system-cert and --system-key go together")
	}
	if a.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
			return usageError("status: --system-cert, --system-key: %w", err)
		}
	}
	if a.CAFile != "" {
		data, err := os.ReadFile(a.CAFile)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(data) {
			err = fmt.Errorf("%s: no PEM certificate", a.CAFile)
		}
		if err != nil {
			return usageError("status: --system-ca: %w", err)
		}
	}
	if a.CredsFile != "" {
		if _, err := os.ReadFile(a.CredsFile); err != nil {
			return usageError("status: --system-creds: %w", err)
		}
	}
	return nil
}

// splitList flattens repeated and comma-separated values.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func progressLine(s *fleet.Status) string {
	return fmt.Sprintf("%s %s: new=%d old=%d unknown=%d none=%d stable=%s",
		s.Time.Format("15:04:05.000"), s.Verdict, s.Counts.New, s.Counts.Old, s.Counts.Unknown, s.Counts.None,
		s.StableFor.Round(100*time.Millisecond))
}

// printStatus is the compact table: per server, then the stragglers by
// name, then the verdict.
func printStatus(w io.Writer, st *fleet.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tTOTAL\tNEW\tOLD\tUNKNOWN\tNONE\t")
	for _, s := range st.Servers {
		name := s.Name
		if name == "" {
			name = s.Key
		}
		if !s.Answered {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tno answer: %s\n", name, s.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", name, s.Counts.Total, s.Counts.New, s.Counts.Old, s.Counts.Unknown, s.Counts.None)
	}
	c := st.Counts
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t\n", c.Total, c.New, c.Old, c.Unknown, c.None)
	_ = tw.Flush()
	if len(st.Stragglers) > 0 {
		s := append([]string(nil), st.Stragglers...)
		sort.Strings(s)
		fmt.Fprintf(w, "\nstill on old material (%d): %s\n", len(s), strings.Join(s, ", "))
	}
	for _, m := range st.MissingServers {
		fmt.Fprintf(w, "missing server: %s\n", m)
	}
	for _, m := range st.MissingMembers {
		fmt.Fprintf(w, "missing member: %s\n", m)
	}
	line := fmt.Sprintf("\nverdict: %s", st.Verdict)
	if len(st.Reasons) > 0 {
		line += " — " + strings.Join(st.Reasons, "; ")
	}
	fmt.Fprintln(w, line)
}
