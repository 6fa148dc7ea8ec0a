package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natscert/natscert/report"
)

// The browser test renders report.html in headless Chromium and reads the
// page back from the rendered DOM. It runs when chromium is installed
// (scripts/install-chromium.sh) and must run when NATSCERT_BROWSER=1.
// NATSCERT_REPORT_JSON=path renders that report.json instead of the
// synthetic ones. Screenshots go to screenshots/ at the repository root.

// chromiumFlags keep the browser from doing anything beyond the page:
// no GPU, no first-run, no background or component traffic, no QUIC, and
// every host name resolving to nothing.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
	"--disable-background-networking", "--disable-component-update",
	"--disable-sync", "--disable-quic", "--hide-scrollbars",
	"--host-resolver-rules=MAP * ~NOTFOUND",
}

func chromium(t *testing.T) string {
	t.Helper()
	required := os.Getenv("NATSCERT_BROWSER") == "1"
	if testing.Short() && !required {
		t.Skip("browser test skipped in -short mode; NATSCERT_BROWSER=1 requires it")
	}
	for _, p := range []string{os.Getenv("NATSCERT_CHROMIUM"), "chromium", "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if required {
		t.Fatal("NATSCERT_BROWSER=1 but chromium is not installed: run scripts/install-chromium.sh")
	}
	t.Skip("chromium is not installed (scripts/install-chromium.sh installs it); set NATSCERT_BROWSER=1 to require this test")
	return ""
}

// browserRun is one headless Chromium run on a local file.
type browserRun struct {
	stdout, stderr string
	netLog         string // path of the JSON net log
}

func runChromium(t *testing.T, bin, file string, extra ...string) browserRun {
	t.Helper()
	// A fresh profile per run. Not t.TempDir: chromium's helpers may still
	// be closing files in it when the test ends.
	profile, err := os.MkdirTemp("", "natscert-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	netLog := filepath.Join(profile, "netlog.json")

	args := append([]string{}, chromiumFlags...)
	args = append(args, "--user-data-dir="+profile, "--log-net-log="+netLog,
		"--enable-logging=stderr", "--v=0")
	args = append(args, extra...)
	args = append(args, "file://"+file)

	// A guard against a hung browser, not a speed assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, tail(stderr.String(), 2000))
	}
	return browserRun{stdout: stdout.String(), stderr: stderr.String(), netLog: netLog}
}

// pageRequests reads a Chromium net log and returns the URLs the page
// itself asked for (requests whose network isolation key or initiator is
// the file:// page), leaving out the file itself; other lists the
// browser's own background requests, which do not come from the page.
func pageRequests(netLog string) (page, other []string, err error) {
	b, err := os.ReadFile(netLog)
	if err != nil {
		return nil, nil, err
	}
	var log struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int `json:"type"`
			Params struct {
				URL                 string `json:"url"`
				Initiator           string `json:"initiator"`
				NetworkIsolationKey string `json:"network_isolation_key"`
				SiteForCookies      string `json:"site_for_cookies"`
			} `json:"params"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &log); err != nil {
		return nil, nil, fmt.Errorf("net log %s: %w", netLog, err)
	}
	start, ok := log.Constants.LogEventTypes["URL_REQUEST_START_JOB"]
	if !ok {
		return nil, nil, errors.New("net log has no URL_REQUEST_START_JOB event type")
	}
	for _, e := range log.Events {
		p := e.Params
		if e.Type != start || p.URL == "" || strings.HasPrefix(p.URL, "file://") {
			continue
		}
		if strings.Contains(p.NetworkIsolationKey, "file://") || strings.Contains(p.SiteForCookies, "file://") || p.Initiator == "null" {
			page = append(page, p.URL)
		} else {
			other = append(other, p.URL)
		}
	}
	return page, other, nil
}

// consoleMessages returns the console lines the page produced (errors,
// CSP violations) from Chromium's stderr log.
func consoleMessages(stderr, file string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, ":CONSOLE") && strings.Contains(l, file) {
			out = append(out, l)
		}
	}
	return out
}

func TestBrowserRendersReport(t *testing.T) {
	bin := chromium(t)
	type input struct {
		name string
		r    *report.Report
	}
	inputs := []input{{"report", syntheticReport(true)}, {"report-broken", syntheticReport(false)}}
	if path := os.Getenv("NATSCERT_REPORT_JSON"); path != "" {
		r, err := report.ReadJSON(path)
		if err != nil {
			t.Fatalf("NATSCERT_REPORT_JSON: %v", err)
		}
		name := "report-from-json"
		if abs, err := filepath.Abs(path); err == nil {
			name = "report-" + filepath.Base(filepath.Dir(abs))
		}
		inputs = []input{{name, r}}
	}
	shots := screenshotDir(t)

	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := report.WriteFiles(dir, in.r); err != nil {
				t.Fatal(err)
			}
			// Compare against report.json as written, not the value in memory.
			want, err := report.ReadJSON(filepath.Join(dir, report.JSONFile))
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, report.HTMLFile)

			// One run prints the DOM after the page's script ran and takes
			// the screenshot.
			shot := filepath.Join(shots, in.name+".png")
			os.Remove(shot)
			run := runChromium(t, bin, file, "--dump-dom", "--screenshot="+shot, "--window-size=1280,2800")
			dom := run.stdout
			if !strings.Contains(dom, `data-ready="1"`) {
				t.Errorf("the page script did not finish; console:\n%s", strings.Join(consoleMessages(run.stderr, file), "\n"))
			}
			checkPage(t, dom, want)
			if msgs := consoleMessages(run.stderr, file); len(msgs) > 0 {
				t.Errorf("the page wrote to the console (errors or blocked loads):\n%s", strings.Join(msgs, "\n"))
			}
			page, other, err := pageRequests(run.netLog)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 0 {
				t.Errorf("the page made network requests: %q", page)
			}
			if len(other) > 0 {
				t.Logf("ignored %d background request(s) of the browser itself", len(other))
			}

			if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
				t.Fatalf("no screenshot at %s: %v", shot, err)
			}
			t.Logf("screenshot: %s", shot)
		})
	}
}

// TestBrowserNetLogSeesPageRequests shows that the net-log check above
// would catch a page that loads from the network: a page without the CSP
// that refers to an image, a stylesheet and a script elsewhere.
func TestBrowserNetLogSeesPageRequests(t *testing.T) {
	bin := chromium(t)
	file := filepath.Join(t.TempDir(), "leaky.html")
	leaky := `<!DOCTYPE html><html><head><link rel="stylesheet" href="https://fonts.example.net/font.css"></head>` +
		`<body><img src="http://cdn.example.com/logo.png"><script src="https://cdn.example.org/chart.js"></script></body></html>`
	if err := os.WriteFile(file, []byte(leaky), 0o644); err != nil {
		t.Fatal(err)
	}
	run := runChromium(t, bin, file, "--dump-dom")
	page, _, err := pageRequests(run.netLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://fonts.example.net/font.css", "http://cdn.example.com/logo.png", "https://cdn.example.org/chart.js"} {
		found := false
		for _, p := range page {
			found = found || p == u
		}
		if !found {
			t.Errorf("net log check missed the page's request to %s (saw %q)", u, page)
		}
	}
	if refs := externalRefs(leaky); len(refs) != 3 {
		t.Errorf("externalRefs found %q, want the 3 references", refs)
	}
}

// screenshotDir is screenshots/ at the repository root (git-ignored).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	shots := filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return shots
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
