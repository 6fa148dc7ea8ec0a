package report

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/natscert/natscert/pki"
)

// File names WriteFiles writes in its directory.
const (
	JSONFile = "report.json"
	HTMLFile = "report.html"
)

// WriteFiles writes r to dir as report.json and report.html, creating dir
// when needed. Each file is written to a temporary name and renamed, so a
// reader never sees half a report.
func WriteFiles(dir string, r *Report) error {
	if r == nil {
		return errors.New("report: write files: nil report")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: write files: %w", err)
	}
	var js, page bytes.Buffer
	if err := WriteJSON(&js, r); err != nil {
		return err
	}
	if err := WriteHTML(&page, r); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, JSONFile), js.Bytes()); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, HTMLFile), page.Bytes())
}

// WriteHTMLFile writes r's page to path (written to a temporary name and
// renamed), for re-rendering a saved report.json.
func WriteHTMLFile(path string, r *Report) error {
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		return err
	}
	return writeFileAtomic(path, page.Bytes())
}

// writeFileAtomic writes a report file through pki.WriteFileAtomic (temp
// file, sync, rename), so a reader never sees half a report.
func writeFileAtomic(path string, b []byte) error {
	if err := pki.WriteFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
