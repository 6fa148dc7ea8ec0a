package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/natscert/natscert/report"
)

func init() { commands = append(commands, newReportCmd) }

func newReportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report FILE.json",
		Short: "Render report.html from a saved report.json",
		Long: `Render the HTML page of a drill or rotation from its report.json.

natscert drill and natscert rotate run write report.json and report.html
side by side; this command renders the page again from the JSON alone, for
example after an upgrade of natscert or from a report copied from CI. The
page is self-contained: it loads nothing from the network.

Example:
  natscert report out/report.json                # writes out/report.html
  natscert report out/report.json -o drill.html
  natscert report out/report.json -o -           # the page on stdout

Exit status: 0 the page was written, whatever the verdict it shows; 2 usage,
or FILE.json cannot be read or is not a natscert report.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := report.ReadJSON(args[0])
			if err != nil {
				return exitWith(exitUsage, err)
			}
			if out == "-" {
				return report.WriteHTML(cmd.OutOrStdout(), r)
			}
			dst := out
			if dst == "" {
				dst = filepath.Join(filepath.Dir(args[0]), report.HTMLFile)
			}
			if err := report.WriteHTMLFile(dst, r); err != nil {
				return exitWith(exitUsage, err)
			}
			v := r.Verdict()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s\n", dst)
			mark := "ok"
			if !v.OK {
				mark = "NOT OK"
			}
			fmt.Fprintf(w, "verdict: %s: %s\n", mark, v.Headline)
			for _, b := range v.Broken {
				fmt.Fprintf(w, "  - %s\n", b)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", `where to write the page ("-" for stdout; default: report.html next to FILE.json)`)
	return cmd
}
