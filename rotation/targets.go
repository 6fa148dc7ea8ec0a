package rotation

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/natscert/natscert/pki"
)

// Member is one member of the fleet as the rotation knows it at run time.
type Member struct {
	Workload string  `json:"workload"`
	Name     string  `json:"name"`
	Match    MatchBy `json:"match"`
	Replicas int     `json:"replicas"`
	Mode     Mode    `json:"mode"`
	CertFile string  `json:"cert_file"`
	KeyFile  string  `json:"key_file"`
	// OldCertSHA256 and NewCertSHA256 are the leaves' fingerprints as
	// nats-server reports them.
	OldCertSHA256 string `json:"old_cert_sha256"`
	NewCertSHA256 string `json:"new_cert_sha256"`
	Log           string `json:"log,omitempty"`
	// RootsFile is where the member reads the CA bundle that verifies
	// the servers (a server CA rotation delivers it).
	RootsFile string `json:"roots_file,omitempty"`
}

// Files is the material delivered to a member.
type Files struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Target delivers material to members and restarts them. The plan's
// commands and local files are one implementation (CommandTarget);
// programs implement their own (a process supervisor, Kubernetes).
type Target interface {
	// Deliver puts files where the member reads them (CertFile, KeyFile).
	// It must be idempotent: a resumed rotation may deliver again.
	Deliver(ctx context.Context, m Member, f Files) error
	// Restart restarts the member so that it loads its files. It is not
	// called for members in reload mode.
	Restart(ctx context.Context, m Member) error
}

// RootsTarget is a Target that also delivers a member's roots, the CA
// bundle that verifies the servers, for a server CA rotation. A Target
// without it has the roots written to Member.RootsFile on the local disk.
type RootsTarget interface {
	Target
	// DeliverRoots puts roots (PEM) where the member reads them
	// (RootsFile). It must be idempotent.
	DeliverRoots(ctx context.Context, m Member, roots []byte) error
}

// deliverRoots delivers roots through t, or writes them locally.
func deliverRoots(ctx context.Context, t Target, m Member, roots []byte) error {
	if rt, ok := t.(RootsTarget); ok {
		return rt.DeliverRoots(ctx, m, roots)
	}
	return writeRoots(m, roots)
}

func writeRoots(m Member, roots []byte) error {
	if err := pki.WriteFileAtomic(m.RootsFile, roots, 0o644); err != nil {
		return fmt.Errorf("rotation: deliver roots to %s: %w", m.Name, err)
	}
	return nil
}

// CommandTarget is the Target a plan's workload describes: files written
// locally or copied by the workload's deliver command, and the restart
// command.
func CommandTarget(p *Plan, w *Workload) Target { return &commandTarget{plan: p, w: w} }

type commandTarget struct {
	plan *Plan
	w    *Workload
}

func (t *commandTarget) Deliver(ctx context.Context, m Member, f Files) error {
	for _, file := range []struct {
		dst  string
		data []byte
		mode os.FileMode
	}{{m.KeyFile, f.KeyPEM, 0o600}, {m.CertFile, f.CertPEM, 0o644}} {
		if t.w.Deliver == nil {
			if err := pki.WriteFileAtomic(file.dst, file.data, file.mode); err != nil {
				return fmt.Errorf("rotation: deliver to %s: %w", m.Name, err)
			}
			continue
		}
		err := deliverByCommand(ctx, t.plan, t.w.Deliver, file.data, file.mode, map[string]any{
			"Member": m.Name, "Workload": m.Workload, "Dst": file.dst,
		})
		if err != nil {
			return fmt.Errorf("rotation: deliver to %s: %w", m.Name, err)
		}
	}
	return nil
}

func (t *commandTarget) DeliverRoots(ctx context.Context, m Member, roots []byte) error {
	if t.w.Deliver == nil {
		return writeRoots(m, roots)
	}
	err := deliverByCommand(ctx, t.plan, t.w.Deliver, roots, 0o644, map[string]any{
		"Member": m.Name, "Workload": m.Workload, "Dst": m.RootsFile,
	})
	if err != nil {
		return fmt.Errorf("rotation: deliver roots to %s: %w", m.Name, err)
	}
	return nil
}

func (t *commandTarget) Restart(ctx context.Context, m Member) error {
	if t.w.Restart == nil {
		return fmt.Errorf("rotation: restart %s: workload %s has no restart command", m.Name, m.Workload)
	}
	_, err := runCommand(ctx, t.w.Restart, map[string]any{
		"Member": m.Name, "Workload": m.Workload, "CertFile": m.CertFile, "KeyFile": m.KeyFile,
	})
	if err != nil {
		return fmt.Errorf("rotation: restart %s: %w", m.Name, err)
	}
	return nil
}

// deliverByCommand writes data to a private staging file and runs cmd with
// .Src set to it, then removes the staging file.
func deliverByCommand(ctx context.Context, p *Plan, cmd *Command, data []byte, mode os.FileMode, vars map[string]any) error {
	dir := filepath.Join(p.stateDir(), "staging")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("rotation: %w", err)
	}
	f, err := os.CreateTemp(dir, "deliver-*")
	if err != nil {
		return fmt.Errorf("rotation: %w", err)
	}
	src := f.Name()
	defer os.Remove(src)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(src, mode)
	}
	if err != nil {
		return fmt.Errorf("rotation: stage %s: %w", vars["Dst"], err)
	}
	vars["Src"] = src
	_, err = runCommand(ctx, cmd, vars)
	return err
}

var commandFuncs = template.FuncMap{
	"quote": func(v any) string {
		return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", `'\''`) + "'"
	},
}

// expand renders a command template.
func expand(text string, vars map[string]any) (string, error) {
	t, err := template.New("command").Funcs(commandFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("rotation: command %q: %w", text, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, vars); err != nil {
		return "", fmt.Errorf("rotation: command %q: %w", text, err)
	}
	return b.String(), nil
}

// runCommand renders and runs cmd with /bin/sh -c, returning its output.
func runCommand(ctx context.Context, cmd *Command, vars map[string]any) ([]byte, error) {
	line, err := expand(cmd.Run, vars)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, or(cmd.Timeout, 60*time.Second))
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	c.WaitDelay = 5 * time.Second
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 300 {
			msg = msg[len(msg)-300:]
		}
		if msg != "" {
			return out.Bytes(), fmt.Errorf("rotation: %q: %w: %s", line, err, msg)
		}
		return out.Bytes(), fmt.Errorf("rotation: %q: %w", line, err)
	}
	return out.Bytes(), nil
}
