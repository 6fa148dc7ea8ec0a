package report

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// writeFileAtomic writes b to a temporary file next to path and renames it
// over path.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}
