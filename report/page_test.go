package report_test

import (
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"

	"github.com/natscert/natscert/report"
)

// These read a rendered page (the template's output or chromium's
// --dump-dom) without an HTML parser: both quote every attribute with ".

var (
	sampleTag = regexp.MustCompile(`<g class="sample"[^>]*>`)
	attr      = regexp.MustCompile(`([a-z][a-z0-9-]*)="([^"]*)"`)
	// externalRef finds what could make the browser fetch: URLs in
	// src/href/action/poster/srcset/data attributes, CSS url() and @import.
	externalRef = regexp.MustCompile(`(?i)\b(?:src|href|action|poster|srcset|data)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^)"'\s]*)|(@import)`)
	scheme      = regexp.MustCompile(`(?i)^[a-z][a-z0-9+.-]*:`)
	cspMeta     = regexp.MustCompile(`<meta http-equiv="Content-Security-Policy" content="([^"]*)">`)
	reportData  = regexp.MustCompile(`(?s)<script type="application/json" id="report-data">(.*?)</script>`)
)

// plotted returns the figures of every plotted sample of the page's
// timeline, read from the data attributes of its <g class="sample">.
func plotted(page string) ([]report.Sample, error) {
	var out []report.Sample
	for _, tag := range sampleTag.FindAllString(page, -1) {
		a := map[string]string{}
		for _, m := range attr.FindAllStringSubmatch(tag, -1) {
			a[m[1]] = html.UnescapeString(m[2])
		}
		var s report.Sample
		var err error
		ints := []struct {
			key string
			dst *int64
		}{{"data-t", &s.T}, {"data-failures", &s.Failures}}
		for _, f := range ints {
			if *f.dst, err = strconv.ParseInt(a[f.key], 10, 64); err != nil {
				return nil, fmt.Errorf("%s in %s: %w", f.key, tag, err)
			}
		}
		for key, dst := range map[string]*int{"data-old": &s.Old, "data-new": &s.New, "data-unknown": &s.Unknown} {
			if *dst, err = strconv.Atoi(a[key]); err != nil {
				return nil, fmt.Errorf("%s in %s: %w", key, tag, err)
			}
		}
		if s.MsgRate, err = strconv.ParseFloat(a["data-rate"], 64); err != nil {
			return nil, fmt.Errorf("data-rate in %s: %w", tag, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// bodyRows counts the rows in the <tbody> of the table with the given id,
// or returns -1 when the page has no such table.
func bodyRows(page, id string) int {
	i := strings.Index(page, `<table id="`+id+`"`)
	if i < 0 {
		return -1
	}
	table := page[i:]
	if end := strings.Index(table, "</table>"); end >= 0 {
		table = table[:end]
	}
	body := table
	if b := strings.Index(table, "<tbody"); b >= 0 {
		body = table[b:]
	}
	return strings.Count(body, "<tr")
}

// externalRefs lists what in the page points outside the file: a URL
// with a scheme other than data:, a network path (//host), or @import.
func externalRefs(page string) []string {
	var out []string
	for _, m := range externalRef.FindAllStringSubmatch(page, -1) {
		u := m[1] + m[2]
		switch {
		case m[3] != "":
			out = append(out, m[0])
		case strings.HasPrefix(u, "//"),
			scheme.MatchString(u) && !strings.HasPrefix(strings.ToLower(u), "data:"):
			out = append(out, m[0])
		}
	}
	return out
}

// embedded decodes the JSON the page carries in #report-data.
func embedded(page string) (*report.Report, error) {
	m := reportData.FindStringSubmatch(page)
	if m == nil {
		return nil, fmt.Errorf("no <script id=report-data> in the page")
	}
	var r report.Report
	if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
		return nil, fmt.Errorf("#report-data: %w", err)
	}
	return &r, nil
}
