package report_test

import (
	"bytes"
	"errors"
	"html"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/report"
	"github.com/natscert/natscert/rotation"
)

func TestWriteFilesRoundTrip(t *testing.T) {
	for _, ok := range []bool{true, false} {
		want := syntheticReport(ok)
		dir := filepath.Join(t.TempDir(), "out")
		if err := report.WriteFiles(dir, want); err != nil {
			t.Fatal(err)
		}
		got, err := report.ReadJSON(filepath.Join(dir, report.JSONFile))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ok=%v: report.json does not read back as the report written", ok)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Errorf("dir holds %d entries, want report.json and report.html only", len(entries))
		}
		page, err := os.ReadFile(filepath.Join(dir, report.HTMLFile))
		if err != nil {
			t.Fatal(err)
		}
		checkPage(t, string(page), got)
	}
}

// checkPage asserts that a page shows the report r: the embedded JSON is
// r, every plotted point is r's sample, and the tables have a row per
// phase, wave and member. Shared with the browser test.
func checkPage(t *testing.T, page string, r *report.Report) {
	t.Helper()
	emb, err := embedded(page)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(emb, r) {
		t.Error("#report-data differs from report.json")
	}
	points, err := plotted(page)
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != len(r.Timeline) {
		t.Fatalf("chart plots %d points, report.json has %d samples", len(points), len(r.Timeline))
	}
	for i, p := range points {
		if p != r.Timeline[i] {
			t.Errorf("point %d: chart %+v, report.json %+v", i, p, r.Timeline[i])
		}
	}
	for _, tc := range []struct {
		id   string
		want int
	}{{"phases", len(r.Phases)}, {"waves", len(r.Waves)}, {"members", len(r.Members)}} {
		got := bodyRows(page, tc.id)
		if tc.want == 0 && got == -1 {
			continue // an empty table is not drawn
		}
		if got != tc.want {
			t.Errorf("table %s has %d rows, report.json has %d", tc.id, got, tc.want)
		}
	}
	if refs := externalRefs(page); len(refs) > 0 {
		t.Errorf("page refers outside itself: %q", refs)
	}
	if m := cspMeta.FindStringSubmatch(page); m == nil || html.UnescapeString(m[1]) != report.ContentSecurityPolicy {
		t.Errorf("page has no meta tag with the policy %q", report.ContentSecurityPolicy)
	}
	v := r.Verdict()
	if !strings.Contains(page, `<p class="headline">`+html.EscapeString(v.Headline)+`</p>`) {
		t.Errorf("page does not state the verdict %q", v.Headline)
	}
}

func TestWriteHTMLEscapes(t *testing.T) {
	r := syntheticReport(false)
	r.Title = `</script><script>alert(1)</script>`
	r.Members[0].Name = `<img src=x onerror=alert(2)>`
	r.Phases[0].Observed = `"><svg onload=alert(3)>`
	r.Broken = append(r.Broken, `<b>bold</b> & "quoted"`)
	var b bytes.Buffer
	if err := report.WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script>alert(1)", "<img src=x", "<svg onload", "<b>bold</b>"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	if strings.Count(page, "<script") != 2 {
		t.Errorf("page has %d <script> tags, want the data block and the page script", strings.Count(page, "<script"))
	}
	emb, err := embedded(page)
	if err != nil {
		t.Fatal(err)
	}
	if emb.Title != r.Title || emb.Members[0].Name != r.Members[0].Name {
		t.Error("embedded JSON does not keep the report's text as it is")
	}
}

func TestWriteHTMLSparse(t *testing.T) {
	// A rotation that stopped after preflight: no timeline, waves,
	// members, budget or proof. The page must still render and say so.
	r := &report.Report{Kind: "rotation", Phases: []report.Phase{{Name: "preflight", OK: false, Observed: "nats-1 did not answer /varz"}}}
	var b bytes.Buffer
	if err := report.WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "No timeline samples were recorded") {
		t.Error("page does not say the timeline is empty")
	}
	if n := bodyRows(page, "phases"); n != 1 {
		t.Errorf("phases table has %d rows, want 1", n)
	}
	if strings.Contains(page, report.Proven) {
		t.Error("an unproven rotation claims the proof")
	}
}

func TestReadJSONRejects(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":    "",
		"garbage":  "not json at all",
		"array":    `[{"kind":"drill"}]`,
		"nothing":  `{}`,
		"other":    `{"name":"something else"}`,
		"trailing": `{"kind":"drill"} {"kind":"drill"}`,
		"type":     `{"kind":"drill","phases":"preflight"}`,
	} {
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := report.ReadJSON(path)
		if !errors.Is(err, report.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	_, err := report.ReadJSON(filepath.Join(dir, "missing.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestVerdict(t *testing.T) {
	ok := syntheticReport(true).Verdict()
	if !ok.OK || ok.Headline != report.Proven || len(ok.Broken) != 0 {
		t.Errorf("ok report: %+v", ok)
	}
	bad := syntheticReport(false).Verdict()
	if bad.OK || bad.Headline != "3 promises broken" || len(bad.Broken) != 3 {
		t.Errorf("broken report: %+v", bad)
	}

	// No reasons given: they are read from the figures.
	r := syntheticReport(false)
	r.Broken = nil
	got := r.Verdict().Broken
	want := []string{
		"old certificate accepted on nats-2",
		"nats-2 still has 1 connection(s) on old material",
		"11 message(s) lost",
		"1 request(s) lost",
		"phase proof failed: nats-2 accepted the old probe: its ca_file still holds the old CA",
		"wave 3 gate failed: gate failed: 3 members lost messages during the swap",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("derived broken promises:\n got %q\nwant %q", got, want)
	}

	// OK set but a promise listed as broken: the list wins.
	r = syntheticReport(true)
	r.Broken = []string{"1 request lost"}
	if v := r.Verdict(); v.OK || v.Headline != "Promise broken: 1 request lost" {
		t.Errorf("OK with a broken promise: %+v", v)
	}
}

// The report takes the rotation's judgement of the old probe
// (OldRefused), not its own reading of the outcome: a timed-out probe is
// no refusal.
func TestFromRotationPinnedProofCountsAsRejected(t *testing.T) {
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	res := &rotation.Result{
		Plan: "leaves", Start: start, End: start.Add(time.Minute), OK: true, Outcome: "completed",
		Phases: []rotation.PhaseRecord{
			{Name: rotation.PhaseWaves, Start: start, End: start.Add(20 * time.Second), OK: true, Observed: "gated"},
			{Name: "revoke", Start: start.Add(20 * time.Second), End: start.Add(21 * time.Second), Error: "straggler"},
		},
		Proof: []rotation.ServerProof{
			{Server: "n1", OK: true, OldRefused: true, Old: rotation.ProbeResult{Outcome: rotation.ClosedAfterHandshake}, New: rotation.ProbeResult{Outcome: rotation.Accepted}},
			{Server: "n2", OK: true, OldRefused: true, Old: rotation.ProbeResult{Outcome: rotation.RejectedHandshake}, New: rotation.ProbeResult{Outcome: rotation.Accepted}},
		},
	}
	r := report.FromRotation(res)
	if !r.OldCertRejected || !r.Proof.OK {
		t.Fatalf("old rejected %v, proof ok %v; want both true", r.OldCertRejected, r.Proof.OK)
	}
	if len(r.Phases) != 2 || r.Phases[1].Observed != "straggler" {
		t.Fatalf("phases %+v: want the failed phase's error as observed", r.Phases)
	}
	if r.Budget.ActualMS != 20000 {
		t.Fatalf("budget actual %d ms, want the waves phase, 20000", r.Budget.ActualMS)
	}
	res.Proof[0].Old.Outcome, res.Proof[0].OldRefused = rotation.TimedOut, false
	if _, rejected := report.RotationProof(res); rejected {
		t.Fatal("a timed-out old probe counted as rejected")
	}
}

// A rotation report claims no loss it never measured, and an abort that
// restored everything is not a proven rotation.
func TestRotationVerdicts(t *testing.T) {
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	res := &rotation.Result{Plan: "p", Start: start, End: start.Add(time.Minute), OK: true, Outcome: "completed",
		Proof: []rotation.ServerProof{{Server: "n1", OK: true, OldRefused: true, New: rotation.ProbeResult{Outcome: rotation.Accepted}}}}
	if v := report.FromRotation(res).Verdict(); !v.OK || v.Headline != report.RotationProven || strings.Contains(v.Headline, "lost") {
		t.Errorf("completed rotation: %+v", v)
	}
	aborted := &rotation.Result{Plan: "p", Start: start, End: start.Add(time.Minute), OK: true, Outcome: "aborted",
		Phases: []rotation.PhaseRecord{{Name: rotation.PhaseAbort, Start: start, End: start.Add(time.Minute), OK: true}}}
	r := report.FromRotation(aborted)
	if v := r.Verdict(); r.OK || v.OK || v.Headline != report.RotationAborted {
		t.Errorf("aborted rotation: report OK %v, verdict %+v", r.OK, v)
	}
}
