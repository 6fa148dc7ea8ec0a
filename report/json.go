package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrInvalid marks input that is not a natscert report: malformed JSON, or a
// JSON value that holds none of a report's fields.
var ErrInvalid = errors.New("not a valid natscert report")

// WriteJSON writes r as indented JSON, the content of report.json.
func WriteJSON(w io.Writer, r *Report) error {
	if r == nil {
		return errors.New("report: write json: nil report")
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: write json: %w", err)
	}
	return nil
}

// ReadJSON reads a report.json written by WriteJSON or WriteFiles. Errors
// for content that cannot be a report wrap ErrInvalid.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: read %s: %w", path, err)
	}
	r, err := decodeJSON(b)
	if err != nil {
		return nil, fmt.Errorf("report: read %s: %w", path, err)
	}
	return r, nil
}

// decodeJSON parses one JSON object into a Report and rejects anything
// else: other JSON values, trailing data, or an object with no report field.
func decodeJSON(b []byte) (*Report, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: expected a JSON object", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the report object", ErrInvalid)
	}
	if r.Kind == "" && r.StartedAt.IsZero() && len(r.Phases) == 0 && len(r.Timeline) == 0 && len(r.Members) == 0 {
		return nil, fmt.Errorf("%w: no kind, started_at, phases, timeline or members", ErrInvalid)
	}
	return &r, nil
}
