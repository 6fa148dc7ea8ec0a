package drill

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"
)

// Compare runs the same drill once per strategy (restart, reconnect,
// swap), one after the other on a fresh cluster each, with the same
// members, rate and seed. progress, when not nil, gives the Progress of
// each run. A run that could not start, or was interrupted, ends the
// comparison with its error.
// When cfg.Dir is set, each run uses a subdirectory named after its
// strategy.
func Compare(ctx context.Context, cfg Config, progress func(Strategy) Progress) ([]*Result, error) {
	var out []*Result
	for _, s := range Strategies {
		c := cfg
		c.Strategy = s
		if cfg.Dir != "" {
			c.Dir = filepath.Join(cfg.Dir, string(s))
		}
		if progress != nil {
			c.Progress = progress(s)
		}
		res, err := Run(ctx, c)
		if err != nil {
			return out, fmt.Errorf("drill: compare: %s: %w", s, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// WriteComparison prints results side by side, one column per strategy.
func WriteComparison(w io.Writer, results []*Result) error {
	if len(results) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, cell func(*Result) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", cell(r))
		}
		fmt.Fprintln(tw)
	}
	c := results[0].Config
	fmt.Fprintf(w, "natscert drill --compare: %d clients, %d servers, %d msg/s delivered, %d req/s, %d waves\n",
		c.Clients, c.Servers, c.Rate, c.RequestRate, c.Waves)
	row("", func(r *Result) string { return string(r.Config.Strategy) })
	row("lost messages", func(r *Result) string { return fmt.Sprint(r.Messages.Lost) })
	row("members with loss", func(r *Result) string { return fmt.Sprint(r.Messages.MembersWithLoss) })
	row("failed requests", func(r *Result) string { return fmt.Sprint(r.Requests.Failed()) })
	row("duplicates", func(r *Result) string { return fmt.Sprint(r.Messages.Duplicates) })
	row("out of order", func(r *Result) string { return fmt.Sprint(r.Messages.OutOfOrder) })
	row("longest gap", func(r *Result) string { return fmt.Sprintf("%d ms", longestGap(r)) })
	row("TLS/auth failures", func(r *Result) string { return fmt.Sprint(tlsFailures(r)) })
	row("convergence", func(r *Result) string { return r.Convergence.Round(time.Millisecond).String() })
	row("moving time", func(r *Result) string { return r.Moving.Round(time.Millisecond).String() })
	row("handshake floor", func(r *Result) string { return r.Floor.Duration.Round(time.Millisecond).String() })
	row("server certs renewed", func(r *Result) string {
		return fmt.Sprintf("%d/%d", r.ServerCerts.Renewed, r.ServerCerts.Servers)
	})
	row("old cert rejected", func(r *Result) string { return fmt.Sprint(r.Report.OldCertRejected) })
	row("promises held", func(r *Result) string {
		if r.OK() {
			return "yes"
		}
		return "NO"
	})
	row("duration", func(r *Result) string { return r.Duration.Round(100 * time.Millisecond).String() })
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if !r.OK() {
			fmt.Fprintf(w, "%s: %s\n", r.Config.Strategy, r.verdictLine())
		}
	}
	return nil
}

func longestGap(r *Result) int64 {
	var g int64
	for _, m := range r.Report.Members {
		g = max(g, m.GapMS)
	}
	return g
}

func tlsFailures(r *Result) int64 {
	var n int64
	for _, m := range r.Report.Members {
		n += m.TLSFailures
	}
	return n
}
