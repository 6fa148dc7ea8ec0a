package rotation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

// Server is one nats-server as a rotation acts on it. The host
// implementation (HostServer) works on files, signals and the system
// account; EmbeddedServer works on an in-process server. What a server
// does is observed through package fleet, from its MonitorURL.
type Server interface {
	// Name identifies the server in events and reports.
	Name() string
	// ClientURL is where probes dial, tls://host:port.
	ClientURL() string
	// MonitorURL is the HTTP monitoring endpoint the rotation observes
	// the server through (varz, connz), with package fleet.
	MonitorURL() string
	// ReadClientCA returns the client-trust bundle (ca_file) as it is now.
	ReadClientCA(ctx context.Context) ([]byte, error)
	// WriteClientCA replaces the client-trust bundle; it takes effect at
	// the next Reload.
	WriteClientCA(ctx context.Context, bundle []byte) error
	// Reload makes the server re-read its configuration. A nil error says
	// only that the request was made; the rotation observes the effect.
	Reload(ctx context.Context) error
	// Kick disconnects one client connection.
	Kick(ctx context.Context, cid uint64) error
	// ReadServerCert returns the server's own certificate (PEM) as it is
	// now; nil when it cannot be read back (a remote file).
	ReadServerCert(ctx context.Context) ([]byte, error)
	// ReadServerKey returns the server's own key (PEM) as it is now; nil
	// when it cannot be read back. A server CA rotation keeps a copy of
	// the pair, for abort.
	ReadServerKey(ctx context.Context) ([]byte, error)
	// WriteServerCert replaces the server's own certificate and key; it
	// takes effect at the next Reload.
	WriteServerCert(ctx context.Context, certPEM, keyPEM []byte) error
	// WritePinnedCerts replaces the tls include file natscert owns (its
	// pinned_certs); it takes effect at the next Reload.
	WritePinnedCerts(ctx context.Context, conf []byte) error
}

// EmbeddedServer is the in-process implementation of Server over a server
// of internal/embedded: it writes the server's files, reloads with
// s.Reload and kicks with DisconnectClientByID; it is observed through its
// monitoring endpoint, as on a host.
func EmbeddedServer(s *embedded.Server) Server { return &embeddedServer{s: s} }

type embeddedServer struct{ s *embedded.Server }

func (e *embeddedServer) Name() string       { return e.s.Name }
func (e *embeddedServer) ClientURL() string  { return e.s.ClientURL }
func (e *embeddedServer) MonitorURL() string { return e.s.MonitorURL }
func (e *embeddedServer) ReadClientCA(context.Context) ([]byte, error) {
	b, err := os.ReadFile(e.s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return b, nil
}
func (e *embeddedServer) WriteClientCA(_ context.Context, bundle []byte) error {
	if err := pki.WriteFileAtomic(e.s.CAFile, bundle, 0o644); err != nil {
		return fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return nil
}
func (e *embeddedServer) ReadServerCert(context.Context) ([]byte, error) {
	b, err := os.ReadFile(e.s.CertFile)
	if err != nil {
		return nil, fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return b, nil
}
func (e *embeddedServer) ReadServerKey(context.Context) ([]byte, error) {
	b, err := os.ReadFile(e.s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return b, nil
}
func (e *embeddedServer) WriteServerCert(_ context.Context, certPEM, keyPEM []byte) error {
	// Key first: a reload between the two writes then fails on a key
	// that does not match, and the server keeps its old pair.
	if err := pki.WriteFileAtomic(e.s.KeyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	if err := pki.WriteFileAtomic(e.s.CertFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return nil
}
func (e *embeddedServer) WritePinnedCerts(_ context.Context, conf []byte) error {
	if err := pki.WriteFileAtomic(e.s.TLSExtraFile, conf, 0o644); err != nil {
		return fmt.Errorf("rotation: %s: %w", e.s.Name, err)
	}
	return nil
}
func (e *embeddedServer) Reload(context.Context) error {
	if err := e.s.Reload(); err != nil {
		return fmt.Errorf("rotation: %w", err)
	}
	return nil
}
func (e *embeddedServer) Kick(_ context.Context, cid uint64) error {
	ns := e.s.NATS
	if ns == nil {
		return fmt.Errorf("rotation: %s: kick: server is stopped", e.s.Name)
	}
	if err := ns.DisconnectClientByID(cid); err != nil {
		return fmt.Errorf("rotation: %s: kick cid %d: %w", e.s.Name, cid, err)
	}
	return nil
}

// hostServer is a nats-server on a host, as a ServerSpec describes it.
type hostServer struct {
	spec  ServerSpec
	name  string
	plan  *Plan
	roots *x509.CertPool
	// certs are tried in order to reach the system account: a rotation
	// changes which of them the server accepts.
	certs []tls.Certificate
	id    string // server_id, learnt from varz
}

// HostServer returns the Server for spec: files on the local disk (or
// delivered by spec.Deliver), reloads as spec.Reload says, varz and connz
// from the monitoring endpoint, kicks and system reloads through the
// system account. roots verify the server; certs are client certificates
// natscert may present to it (the probe leaves), tried in order.
func HostServer(p *Plan, spec ServerSpec, roots *x509.CertPool, certs ...tls.Certificate) Server {
	h := &hostServer{spec: spec, name: spec.Name, plan: p, roots: roots, certs: certs}
	if h.name == "" {
		h.name = hostOf(spec.ClientURL)
	}
	return h
}

func hostOf(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return u
	}
	return pu.Host
}

func (h *hostServer) Name() string       { return h.name }
func (h *hostServer) ClientURL() string  { return h.spec.ClientURL }
func (h *hostServer) MonitorURL() string { return h.spec.MonitorURL }

func (h *hostServer) ReadClientCA(ctx context.Context) ([]byte, error) {
	// A remote file is not read back; the rotation keeps its own copy.
	return h.read(h.spec.CAFile)
}

func (h *hostServer) WriteClientCA(ctx context.Context, bundle []byte) error {
	return h.write(ctx, "ca_file", h.spec.CAFile, bundle, 0o644)
}

func (h *hostServer) ReadServerCert(context.Context) ([]byte, error) {
	return h.read(h.spec.CertFile)
}

func (h *hostServer) ReadServerKey(context.Context) ([]byte, error) {
	return h.read(h.spec.KeyFile)
}

// read reads back one of the server's local files; nil when the files are
// remote (delivered by a command) or the plan does not name it.
func (h *hostServer) read(name string) ([]byte, error) {
	if h.spec.Deliver != nil || name == "" {
		return nil, nil
	}
	b, err := os.ReadFile(h.plan.path(name))
	if err != nil {
		return nil, fmt.Errorf("rotation: %s: %w", h.name, err)
	}
	return b, nil
}

func (h *hostServer) WriteServerCert(ctx context.Context, certPEM, keyPEM []byte) error {
	// Key first: a reload between the two writes then fails on a key
	// that does not match, and the server keeps its old pair.
	if err := h.write(ctx, "key_file", h.spec.KeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return h.write(ctx, "cert_file", h.spec.CertFile, certPEM, 0o644)
}

func (h *hostServer) WritePinnedCerts(ctx context.Context, conf []byte) error {
	return h.write(ctx, "pinned_certs_file", h.spec.PinnedCertsFile, conf, 0o644)
}

// write puts one of the server's files in place, locally or by the
// server's deliver command.
func (h *hostServer) write(ctx context.Context, field, name string, data []byte, mode os.FileMode) error {
	if name == "" {
		return fmt.Errorf("rotation: %w: %s: servers[].%s is not set", ErrPlan, h.name, field)
	}
	dst := h.plan.path(name)
	if h.spec.Deliver == nil {
		if err := pki.WriteFileAtomic(dst, data, mode); err != nil {
			return fmt.Errorf("rotation: %s: %w", h.name, err)
		}
		return nil
	}
	return deliverByCommand(ctx, h.plan, h.spec.Deliver, data, mode, map[string]any{
		"Server": h.name, "Dst": dst,
	})
}

func (h *hostServer) Reload(ctx context.Context) error {
	switch h.spec.Reload.Method {
	case ReloadNone:
		return nil
	case ReloadSignal:
		pid, err := h.pid()
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("rotation: %s: reload: SIGHUP to %d: %w", h.name, pid, err)
		}
		return nil
	case ReloadCommand:
		_, err := runCommand(ctx, h.spec.Reload.Command, map[string]any{"Server": h.name, "Pid": h.spec.Reload.Pid})
		if err != nil {
			return fmt.Errorf("rotation: %s: reload: %w", h.name, err)
		}
		return nil
	case ReloadSystem:
		return h.sysRequest(ctx, "RELOAD", nil)
	}
	return fmt.Errorf("rotation: %s: reload method %q", h.name, h.spec.Reload.Method)
}

// pid is the process to send SIGHUP to: reload.pid, or the pid in
// reload.pid_file as it is now.
func (h *hostServer) pid() (int, error) {
	pid := h.spec.Reload.Pid
	if f := h.spec.Reload.PidFile; f != "" {
		b, err := os.ReadFile(h.plan.path(f))
		if err != nil {
			return 0, fmt.Errorf("rotation: %s: reload: %w", h.name, err)
		}
		if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return 0, fmt.Errorf("rotation: %s: reload: pid file %s: %w", h.name, f, err)
		}
	}
	// 0 and negative pids signal process groups (-1: every process the
	// user may signal), 1 is init: never a nats-server to reload.
	if pid <= 1 {
		return 0, fmt.Errorf("rotation: %w: %s: reload: pid %d is not a nats-server's", ErrPlan, h.name, pid)
	}
	return pid, nil
}

func (h *hostServer) Kick(ctx context.Context, cid uint64) error {
	b, _ := json.Marshal(map[string]uint64{"cid": cid})
	return h.sysRequest(ctx, "KICK", b)
}

// sysRequest sends $SYS.REQ.SERVER.<id>.<verb> and reads the API response.
func (h *hostServer) sysRequest(ctx context.Context, verb string, body []byte) error {
	if h.spec.System == nil {
		return fmt.Errorf("rotation: %s: %s needs servers[].system credentials", h.name, strings.ToLower(verb))
	}
	if h.id == "" {
		// The server id, for the subject, from the server's own varz.
		obs, err := fleet.New(fleet.Monitor(h.spec.MonitorURL))
		if err != nil {
			return fmt.Errorf("rotation: %s: %w", h.name, err)
		}
		srvs, err := obs.Servers(ctx)
		if err != nil {
			return fmt.Errorf("rotation: %s: %w", h.name, err)
		}
		if len(srvs) != 1 || !srvs[0].Answered || srvs[0].ID == "" {
			return fmt.Errorf("rotation: %w: %s: no server id from %s", ErrIncomplete, h.name, h.spec.MonitorURL)
		}
		h.id = srvs[0].ID
	}
	var lastErr error
	for _, cert := range h.certs {
		nc, err := nats.Connect(h.spec.ClientURL,
			nats.UserInfo(h.spec.System.User, h.spec.System.Password),
			nats.Secure(&tls.Config{RootCAs: h.roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
			nats.Name("natscert"), nats.NoReconnect(), nats.Timeout(5*time.Second))
		if err != nil {
			lastErr = err
			continue
		}
		msg, err := nc.RequestWithContext(ctx, "$SYS.REQ.SERVER."+h.id+"."+verb, body)
		nc.Close()
		if err != nil {
			return fmt.Errorf("rotation: %s: %s: %w", h.name, strings.ToLower(verb), err)
		}
		var resp struct {
			Error *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return fmt.Errorf("rotation: %s: %s: %w", h.name, strings.ToLower(verb), err)
		}
		if resp.Error != nil {
			return fmt.Errorf("rotation: %s: %s: %s", h.name, strings.ToLower(verb), resp.Error.Description)
		}
		return nil
	}
	if lastErr == nil {
		lastErr = errors.New("no client certificate to present")
	}
	return fmt.Errorf("rotation: %s: connect to the system account: %w", h.name, lastErr)
}
