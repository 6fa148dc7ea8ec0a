package report

import "fmt"

// Verdict is the outcome of a run in plain words: what a page shows first
// and what a terminal prints last.
type Verdict struct {
	// OK is true when every promise held and the proof passed.
	OK bool
	// Headline is one sentence: the proof result, or what broke.
	Headline string
	// Broken lists each promise that did not hold; empty when OK.
	Broken []string
}

// Proven is the headline of a run in which every promise held.
const Proven = "Old certificate rejected on every server; nothing lost"

// RotationProven is the headline of a rotation that completed and was
// proven. A rotation measures no traffic, so it claims nothing about loss.
const RotationProven = "Old certificate rejected and new one accepted on every server"

// RotationAborted is the headline of a rotation rolled back by abort.
const RotationAborted = "Rotation aborted: old trust and material restored; nothing rotated"

// Verdict states the outcome of r. A report is OK only when r.OK is set
// and r.Broken is empty; when r.OK is false without a reason given, the
// reasons are read from the proof, the losses, the phases and the waves.
func (r *Report) Verdict() Verdict {
	rotation := r.Kind == "rotation"
	switch {
	case r.OK && len(r.Broken) == 0 && rotation:
		return Verdict{OK: true, Headline: RotationProven}
	case r.OK && len(r.Broken) == 0:
		return Verdict{OK: true, Headline: Proven}
	case rotation && r.Setup["outcome"] == "aborted" && len(r.Broken) == 0:
		// Not OK: nothing was rotated; but nothing broke either.
		return Verdict{Headline: RotationAborted}
	}
	broken := r.Broken
	if len(broken) == 0 {
		broken = r.brokenPromises()
	}
	v := Verdict{Broken: broken}
	switch len(broken) {
	case 0:
		v.Headline = "Not proven: the run ended before every promise was checked"
	case 1:
		v.Headline = "Promise broken: " + broken[0]
	default:
		v.Headline = fmt.Sprintf("%d promises broken", len(broken))
	}
	return v
}

// brokenPromises reads what did not hold from the figures of r.
func (r *Report) brokenPromises() []string {
	var out []string
	if r.Proof != nil {
		for _, s := range r.Proof.Servers {
			if !s.OldRejected {
				out = append(out, fmt.Sprintf("old certificate accepted on %s", s.Server))
			}
			if !s.NewAccepted {
				out = append(out, fmt.Sprintf("new certificate refused on %s", s.Server))
			}
			if s.OldFingerprints > 0 {
				out = append(out, fmt.Sprintf("%s still has %d connection(s) on old material", s.Server, s.OldFingerprints))
			}
		}
	} else if !r.OldCertRejected {
		out = append(out, "old certificate not shown to be rejected (no proof ran)")
	}
	if n := r.Lost.Messages; n > 0 {
		out = append(out, fmt.Sprintf("%d message(s) lost", n))
	}
	if n := r.Lost.Requests; n > 0 {
		out = append(out, fmt.Sprintf("%d request(s) lost", n))
	}
	for _, p := range r.Phases {
		if !p.OK && !p.End.IsZero() {
			out = append(out, fmt.Sprintf("phase %s failed: %s", p.Name, orDash(p.Observed)))
		}
	}
	for _, w := range r.Waves {
		if !w.OK && !w.End.IsZero() {
			out = append(out, fmt.Sprintf("wave %d gate failed: %s", w.Index, orDash(w.Gate)))
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
