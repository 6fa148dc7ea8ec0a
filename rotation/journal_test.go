package rotation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
