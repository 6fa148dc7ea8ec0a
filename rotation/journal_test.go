package rotation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/pki"
)

// A crash mid-write leaves a torn last line: reopening cuts it off, and
// the next record is a line of its own that a later open reads back.
func TestJournalTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	j, err := OpenJournal(path)
	must(t, err)
	must(t, j.Write("restart:a", StepBegin, "", nil))
	must(t, j.Close())
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(`{"seq":2,"step":"restart:a","sta`)
	must(t, err)
	must(t, f.Close())

	j, err = OpenJournal(path)
	must(t, err)
	if got := j.State("restart:a"); got != StepBegin {
		t.Fatalf("after a torn line: state %q", got)
	}
	must(t, j.Write("restart:a", StepDone, "", nil))
	must(t, j.Close())

	j, err = OpenJournal(path)
	must(t, err)
	defer j.Close()
	if got := j.State("restart:a"); got != StepDone {
		t.Errorf("the record after the torn line was lost: state %q", got)
	}
}

// A line that does not parse and is not the torn last one is an error, as
// is a line too long for a line scanner: nothing is dropped silently.
func TestJournalBadLinesFail(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	must(t, os.WriteFile(bad, []byte("{\"seq\":1,\"step\":\"a\",\"state\":\"begin\"}\nnot json\n{\"seq\":2,\"step\":\"a\",\"state\":\"done\"}\n"), 0o600))
	if _, err := OpenJournal(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad middle line: %v", err)
	}
	long := filepath.Join(dir, "long.jsonl")
	big := `{"seq":1,"step":"a","state":"done","detail":"` + strings.Repeat("x", 2<<20) + "\"}\n"
	must(t, os.WriteFile(long, []byte(big), 0o600))
	j, err := OpenJournal(long)
	must(t, err)
	defer j.Close()
	if j.State("a") != StepDone {
		t.Errorf("a 2 MiB line was dropped")
	}
}

// A preflight that fails touches nothing and begins no rotation: a second
// run is not refused as in progress, and there is nothing to abort. A
// rotation whose abort began, even unfinished, cannot be resumed.
func TestPreflightFailureBeginsNothing(t *testing.T) {
	f := newFixture(t, 1)
	f.addClient("api-1", "api-1", false)
	p := f.plan([]string{"api-1"}, nil)
	p.SLA = time.Nanosecond // the budget cannot fit: preflight fails
	ctx := testContext(t)
	for range 2 {
		r, err := New(p, WithServers(f.servers()...))
		must(t, err)
		if _, err := r.Run(ctx); !errors.Is(err, ErrPhaseFailed) {
			t.Fatalf("run: %v, want the preflight's ErrPhaseFailed", err)
		}
	}
	r, err := New(p, WithServers(f.servers()...))
	must(t, err)
	if _, err := r.Abort(ctx); !errors.Is(err, ErrNotResumable) {
		t.Errorf("abort after a failed preflight: %v, want ErrNotResumable", err)
	}

	j, err := OpenJournal(filepath.Join(p.StateDir, JournalFile))
	must(t, err)
	must(t, j.Write("rotation", StepBegin, "test", nil))
	must(t, j.Write("aborted", StepBegin, "", nil))
	must(t, j.Close())
	if _, err := r.Resume(ctx); !errors.Is(err, ErrNotResumable) {
		t.Errorf("resume after an abort began: %v, want ErrNotResumable", err)
	}
}

// offlinePlan is a plan over a server that is not there (nothing answers
// on 127.0.0.1:1), for what happens before any server is read; sameCA:
// old and new client CA are two files holding the same CA.
func offlinePlan(t *testing.T, sameCA bool) *Plan {
	t.Helper()
	dir := t.TempDir()
	oldCA, err := pki.NewCA("old clients CA")
	must(t, err)
	newCA := oldCA
	if !sameCA {
		newCA, err = pki.NewCA("new clients CA")
		must(t, err)
	}
	must(t, oldCA.WriteFiles(filepath.Join(dir, "old-ca.pem"), filepath.Join(dir, "old-ca-key.pem")))
	must(t, newCA.WriteFiles(filepath.Join(dir, "new-ca.pem"), filepath.Join(dir, "new-ca-key.pem")))
	must(t, os.WriteFile(filepath.Join(dir, "ca_file.pem"), oldCA.CertPEM, 0o644))
	leaf, err := oldCA.Issue("m1", pki.RoleClient)
	must(t, err)
	must(t, leaf.WriteFiles(filepath.Join(dir, "m1.pem"), filepath.Join(dir, "m1-key.pem")))
	return &Plan{
		Name: "offline", Dir: dir,
		Servers: []ServerSpec{{ClientURL: "tls://127.0.0.1:1", MonitorURL: "http://127.0.0.1:1", CAFile: "ca_file.pem",
			System: &SystemAccount{User: "sys"}, Reload: ReloadSpec{Method: ReloadNone}}},
		Material: Material{ServerCA: "old-ca.pem", OldClientCA: "old-ca.pem", NewClientCA: "new-ca.pem",
			OldClientCAKey: "old-ca-key.pem", NewClientCAKey: "new-ca-key.pem"},
		Workloads: []Workload{{Name: "w", Mode: ModeReload, Members: []MemberSpec{{Name: "m1", CertFile: "m1.pem", KeyFile: "m1-key.pem"}}}},
	}
}

// Old and new client CA in two files holding the same CA is a same-CA
// rotation, revoked by pinned_certs: preflight refuses a server without
// pinned_certs_file before anything is touched, not revoke after every
// wave ran.
func TestPreflightSameCAContentNeedsPinnedFile(t *testing.T) {
	p := offlinePlan(t, true)
	r, err := New(p)
	must(t, err)
	_, err = r.Run(testContext(t))
	if !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), "servers[0].pinned_certs_file") {
		t.Fatalf("run: %v, want ErrPlan naming servers[0].pinned_certs_file", err)
	}
	j, err := OpenJournal(filepath.Join(p.stateDir(), JournalFile))
	must(t, err)
	defer j.Close()
	if st := j.State("rotation"); st != "" {
		t.Errorf("rotation %q in the journal: a refused preflight begins nothing", st)
	}
}

// Two runners on one state directory: while one runs, the other can
// neither run nor abort; once it returned, the lock is free.
func TestStateDirLocked(t *testing.T) {
	p := offlinePlan(t, false)
	ctx := testContext(t)
	other, err := New(p)
	must(t, err)
	var runErr, abortErr error
	hook := func(e Event) {
		if e.Kind == PhaseStarted && e.Phase == PhasePreflight {
			_, runErr = other.Run(ctx)
			_, abortErr = other.Abort(ctx)
		}
	}
	r, err := New(p, WithEvents(hook))
	must(t, err)
	if _, err := r.Run(ctx); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("run: %v, want ErrIncomplete (no server answers)", err)
	}
	if !errors.Is(runErr, ErrInProgress) || !errors.Is(abortErr, ErrInProgress) {
		t.Errorf("while another runs: run %v, abort %v; want ErrInProgress", runErr, abortErr)
	}
	if _, err := other.Abort(ctx); !errors.Is(err, ErrNotResumable) {
		t.Errorf("abort after the run returned: %v, want ErrNotResumable (lock free, nothing begun)", err)
	}
}

// A member whose current key pair cannot be read (a remote file) has no
// backup, so abort could not restore it: preflight refuses unless the
// plan gives it (old).
func TestPreflightNeedsOldPair(t *testing.T) {
	p := offlinePlan(t, false)
	must(t, os.Rename(filepath.Join(p.Dir, "m1.pem"), filepath.Join(p.Dir, "m1-old.pem")))
	must(t, os.Rename(filepath.Join(p.Dir, "m1-key.pem"), filepath.Join(p.Dir, "m1-old-key.pem")))
	ctx := testContext(t)
	r, err := New(p)
	must(t, err)
	if _, err := r.Run(ctx); !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), "key pair of m1") {
		t.Fatalf("run: %v, want ErrPlan naming m1's key pair", err)
	}
	p.Workloads[0].Members[0].Old = KeyPair{Cert: "m1-old.pem", Key: "m1-old-key.pem"}
	r, err = New(p)
	must(t, err)
	if _, err := r.Run(ctx); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("run with old given: %v, want preflight past the material (ErrIncomplete: no server answers)", err)
	}
}
