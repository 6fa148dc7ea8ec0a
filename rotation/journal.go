package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// JournalFile is the journal's name inside the plan's state directory.
const JournalFile = "journal.jsonl"

// Step states in the journal.
const (
	StepBegin  = "begin"
	StepDone   = "done"
	StepFailed = "failed"
)

// Record is one line of the journal: a step before it acts (begin) and
// after (done or failed).
type Record struct {
	Seq    int               `json:"seq"`
	Time   time.Time         `json:"time"`
	Step   string            `json:"step"`
	State  string            `json:"state"`
	Detail string            `json:"detail,omitempty"`
	Data   map[string]string `json:"data,omitempty"`
}

// Journal is the append-only record of a rotation, synced to disk after
// every line, so that a crashed run can be resumed from what was done and
// what was left in doubt.
type Journal struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	records []Record
	state   map[string]string // step -> last state
	data    map[string]map[string]string
}

// OpenJournal opens (or creates) the journal at path and reads what it
// holds. A torn last line, from a crash while writing, is cut off, so that
// the next record starts a line of its own; any other line that does not
// parse is an error: a record lost could make a completed step run again.
func OpenJournal(path string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("rotation: journal: %w", err)
	}
	j := &Journal{path: path, state: map[string]string{}, data: map[string]map[string]string{}}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("rotation: journal: %w", err)
	}
	whole := bytes.LastIndexByte(b, '\n') + 1 // bytes up to the last complete line
	for i, line := range bytes.Split(b[:whole], []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("rotation: journal %s: line %d: %w", path, i+1, err)
		}
		j.apply(r)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rotation: journal: %w", err)
	}
	if whole < len(b) {
		if err := f.Truncate(int64(whole)); err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("rotation: journal: cut the torn last line: %w", err)
		}
	}
	j.f = f
	return j, nil
}

func (j *Journal) apply(r Record) {
	j.records = append(j.records, r)
	j.state[r.Step] = r.State
	if len(r.Data) > 0 {
		d := j.data[r.Step]
		if d == nil {
			d = map[string]string{}
			j.data[r.Step] = d
		}
		for k, v := range r.Data {
			d[k] = v
		}
	}
}

// Write appends a record and syncs the file before returning.
func (j *Journal) Write(step, state, detail string, data map[string]string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := Record{Seq: len(j.records) + 1, Time: time.Now().UTC(), Step: step, State: state, Detail: detail, Data: data}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rotation: journal: %w", err)
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("rotation: journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("rotation: journal: %w", err)
	}
	j.apply(r)
	return nil
}

// State is the last state of step, "" when it never began.
func (j *Journal) State(step string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state[step]
}

// Data is the merged data recorded for step.
func (j *Journal) Data(step string) map[string]string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[string]string{}
	for k, v := range j.data[step] {
		out[k] = v
	}
	return out
}

// Records returns a copy of every record so far.
func (j *Journal) Records() []Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Record(nil), j.records...)
}

// Empty reports whether nothing has been recorded.
func (j *Journal) Empty() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.records) == 0
}

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Close closes the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// LockFile is the lock's name inside the plan's state directory.
const LockFile = "lock"

// lockStateDir takes an exclusive lock on dir for one run, resume or
// abort: two natscert processes acting on one rotation (a run in one
// terminal, an abort in another) would undo each other's steps. It does
// not wait: a lock held is ErrInProgress. Closing the file releases it,
// and so does the kernel when the process dies, so a crash leaves no
// stale lock behind.
func lockStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rotation: lock: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rotation: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("rotation: %w: another natscert is acting on it (%s is locked)", ErrInProgress, path)
		}
		return nil, fmt.Errorf("rotation: lock %s: %w", path, err)
	}
	return f, nil
}
