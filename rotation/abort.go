package rotation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/natscert/natscert/fleet"
)

// Abort rolls a rotation back before revoke: members get their old files
// again (restart-mode members that were restarted are restarted again) and
// must be observed on old material; then every server's ca_file is
// restored and reloaded, and any connection still presenting new material
// is kicked and must come back on old. After revoke has begun it refuses
// with ErrNotResumable: finish with Resume instead.
func (r *Runner) Abort(ctx context.Context) (*Result, error) {
	lock, err := lockStateDir(r.plan.stateDir())
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	j, err := OpenJournal(r.journal)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r.j = j
	switch {
	case j.State("rotation") == "":
		return nil, fmt.Errorf("rotation: %w: the journal %s holds no rotation", ErrNotResumable, j.Path())
	case j.State("rotation") == StepDone:
		return nil, fmt.Errorf("rotation: %w: the rotation has finished", ErrNotResumable)
	case j.State("phase:"+PhaseRevoke) != "":
		return nil, fmt.Errorf("rotation: %w: revoke has begun, the old CA may no longer be trusted; finish with resume", ErrNotResumable)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.runCtx = ctx
	r.res = &Result{Plan: r.plan.Name, Start: time.Now(), Outcome: "failed"}
	r.kicked = map[string]bool{}
	if err := j.Write("aborted", StepBegin, "", nil); err != nil {
		return nil, err
	}
	err = r.phase(ctx, PhaseAbort, false, r.rollback)
	r.finish(err, "aborted")
	if err != nil {
		return r.res, err
	}
	if err := j.Write("aborted", StepDone, "old trust and material restored", nil); err != nil {
		return r.res, err
	}
	if err := j.Write("rotation", StepDone, "aborted", nil); err != nil {
		return r.res, err
	}
	return r.res, nil
}

func (r *Runner) rollback(ctx context.Context) (string, error) {
	mat, err := loadMaterial(r.plan)
	if err != nil {
		return "", err
	}
	r.useMaterial(mat)
	var notes []string
	// 0. A server CA rotation not past the removal of the old server CA:
	// servers back on their old certificates, members' roots back to the
	// old server CA.
	if n, err := r.rollbackServerCA(ctx); err != nil {
		return "", err
	} else if n != "" {
		notes = append(notes, n)
	}
	// 1. Members back on old material while the servers still trust it.
	var moved []*memberState
	var unrestorable []string
	for _, m := range mat.members {
		if r.j.State("deliver:"+m.Name) == "" {
			continue
		}
		if m.oldFiles == nil || len(m.oldFiles.KeyPEM) == 0 {
			unrestorable = append(unrestorable, m.Name)
			continue
		}
		t := r.targets[m.Workload]
		if err := t.Deliver(ctx, m.Member, *m.oldFiles); err != nil {
			return "", fmt.Errorf("rotation: %w: restore %s: %w", ErrPhaseFailed, m.Name, err)
		}
		r.emit(Event{Kind: MemberDelivered, Phase: PhaseAbort, Workload: m.Workload, Member: m.Name, OK: true, Detail: "old material restored"})
		if m.Mode == ModeRestart && r.j.State("restart:"+m.Name) != "" {
			step := "abort-restart:" + m.Name
			if r.j.State(step) != StepDone {
				if err := r.j.Write(step, StepBegin, "", nil); err != nil {
					return "", err
				}
				if err := t.Restart(ctx, m.Member); err != nil {
					return "", fmt.Errorf("rotation: %w: restart %s: %w", ErrPhaseFailed, m.Name, err)
				}
				r.emit(Event{Kind: MemberRestarted, Phase: PhaseAbort, Workload: m.Workload, Member: m.Name, OK: true})
				if err := r.j.Write(step, StepDone, "", nil); err != nil {
					return "", err
				}
			}
		}
		moved = append(moved, m)
	}
	if len(unrestorable) > 0 {
		return "", fmt.Errorf("rotation: %w: no backup of the old key pair of %s; restore them by hand, then abort again", ErrPhaseFailed, strings.Join(unrestorable, ", "))
	}
	timeout := or(r.plan.Timeouts.Converge, 60*time.Second)
	if len(moved) > 0 {
		obs, err := r.waitOld(ctx, moved, timeout, time.Second)
		if errors.Is(err, errNotOnNew) {
			// Members still on new material are kicked after the servers
			// stop trusting it; those on old need nothing.
			notes = append(notes, "before restoring trust: "+obs)
		} else if err != nil {
			return "", err
		} else {
			notes = append(notes, fmt.Sprintf("%d member(s) back on old material", len(moved)))
		}
	}
	// 2. Servers back to their original ca_file.
	for _, s := range r.servers {
		b, err := os.ReadFile(r.serverBackup(s))
		if errors.Is(err, os.ErrNotExist) {
			continue // trust was never changed on this server
		}
		if err != nil {
			return "", fmt.Errorf("rotation: restore %s: %w", s.Name(), err)
		}
		if err := s.WriteClientCA(ctx, b); err != nil {
			return "", fmt.Errorf("rotation: %w: restore %s: %w", ErrPhaseFailed, s.Name(), err)
		}
	}
	obs, err := r.setTrust(ctx, PhaseAbort, nil, map[string]bool{"old": true})
	if err != nil {
		return "", err
	}
	notes = append(notes, obs)
	// 3. Anything still presenting new material is kicked and must come
	// back on old.
	st, err := r.look(ctx, mat.members)
	if err != nil {
		return "", err
	}
	byID := r.serverByID(st)
	var kicked []*memberState
	for i := range st.Connections {
		c := &st.Connections[i]
		m := r.memberOf(c)
		if c.System || c.Class != fleet.ClassNew || m == nil {
			continue
		}
		if err := r.kick(ctx, byID, c, PhaseAbort, m.Name, fmt.Sprintf("cid %d on new material", c.CID)); err != nil {
			return "", err
		}
		r.kicked[m.Name] = true
		kicked = append(kicked, m)
	}
	if len(kicked) > 0 {
		obs, err := r.waitOld(ctx, dedupe(kicked), or(r.plan.Timeouts.Return, 30*time.Second), time.Second)
		r.markReturned(PhaseAbort, err == nil)
		if err != nil {
			return "", fmt.Errorf("rotation: %w: kicked members not back on old material: %s", ErrPhaseFailed, obs)
		}
		notes = append(notes, fmt.Sprintf("kicked %d member(s) on new material; back on old", len(kicked)))
	}
	return strings.Join(notes, "; "), nil
}

func dedupe(ms []*memberState) []*memberState {
	seen := map[*memberState]bool{}
	var out []*memberState
	for _, m := range ms {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}
