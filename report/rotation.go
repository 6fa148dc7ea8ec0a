package report

import (
	"fmt"

	"github.com/natscert/natscert/rotation"
)

// FromRotation records a rotation's result: its phases, waves, members,
// timeline, budget and proof. `natscert rotate` writes it as is; the drill
// adds its own phases and per-member costs around it. It is OK only for a
// rotation that completed: an abort that succeeded rotated nothing.
func FromRotation(res *rotation.Result) *Report {
	r := &Report{
		Kind: "rotation", Title: "Rotation " + res.Plan,
		StartedAt: res.Start, FinishedAt: res.End, OK: res.OK && res.Outcome == "completed",
		Setup: map[string]any{"outcome": res.Outcome},
	}
	if res.Error != "" {
		r.Broken = append(r.Broken, res.Error)
	}
	r.Phases = RotationPhases(res)
	r.Waves = RotationWaves(res)
	for _, m := range res.Members {
		r.Members = append(r.Members, Member{Name: m.Name, OldCertSHA256: m.OldCertSHA256,
			NewCertSHA256: m.NewCertSHA256, OnNew: m.OnNew})
	}
	for _, s := range res.Samples {
		r.Timeline = append(r.Timeline, Sample{T: s.At.Sub(res.Start).Milliseconds(), Old: s.Old, New: s.New, Unknown: s.Unknown})
	}
	r.Budget = RotationBudget(res)
	r.Proof, r.OldCertRejected = RotationProof(res)
	return r
}

// RotationPhases lists the rotation's phases; a failed phase shows its error
// as what was observed.
func RotationPhases(res *rotation.Result) []Phase {
	var ps []Phase
	for _, p := range res.Phases {
		obs := p.Observed
		if p.Error != "" {
			obs = p.Error
		}
		ps = append(ps, Phase{Name: p.Name, Start: p.Start, End: p.End,
			DurationMS: p.End.Sub(p.Start).Milliseconds(), OK: p.OK, Observed: obs})
	}
	return ps
}

// RotationWaves lists the rotation's waves with what their gates observed.
func RotationWaves(res *rotation.Result) []Wave {
	var ws []Wave
	for _, w := range res.Waves {
		ws = append(ws, Wave{Index: w.Index, Workload: w.Workload, Members: w.Members,
			Start: w.Start, End: w.End, DurationMS: w.End.Sub(w.Start).Milliseconds(), OK: w.OK, Gate: w.Gate})
	}
	return ws
}

// RotationBudget compares the budget model, which covers the waves, with
// how long the waves phase really took.
func RotationBudget(res *rotation.Result) *Budget {
	b := res.Budget
	out := &Budget{PredictedMS: b.Total.Milliseconds(), WorstCaseMS: b.WorstTotal.Milliseconds(), SLAMS: b.SLA.Milliseconds()}
	for _, p := range res.Phases {
		if p.Name == rotation.PhaseWaves {
			out.ActualMS += p.End.Sub(p.Start).Milliseconds()
		}
	}
	out.Fits = out.ActualMS <= out.PredictedMS
	if out.SLAMS > 0 {
		out.Fits = out.ActualMS <= out.SLAMS
	}
	return out
}

// RotationProof is the proof per server, and whether every server refused
// old material, as the rotation judged it (ServerProof.OldRefused).
func RotationProof(res *rotation.Result) (*Proof, bool) {
	if len(res.Proof) == 0 {
		return nil, false
	}
	pr := &Proof{OK: true}
	allRejected := true
	for _, s := range res.Proof {
		allRejected = allRejected && s.OldRefused
		pr.OK = pr.OK && s.OK
		pr.Servers = append(pr.Servers, ServerProof{Server: s.Server, OldRejected: s.OldRefused,
			NewAccepted: s.New.Outcome == rotation.Accepted, OldFingerprints: s.OldRemaining,
			Detail: fmt.Sprintf("old: %s %s; new: %s %s", s.Old.Outcome, s.Old.Detail, s.New.Outcome, s.New.Detail)})
	}
	return pr, allRejected
}
