package rotation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/embedded"
	"github.com/natscert/natscert/pki"
)

// Server is one nats-server as a rotation acts on it and observes it. The
// host implementation (HostServer) works on files, signals and the
// monitoring endpoint; EmbeddedServer works on an in-process server.
type Server interface {
	// Name identifies the server in events and reports.
	Name() string
	// ClientURL is where probes dial, tls://host:port.
	ClientURL() string
	// Varz reads what the rotation observes of the server itself.
	Varz(ctx context.Context) (Varz, error)
	// Connz lists the server's client connections with the certificates
	// they presented.
	Connz(ctx context.Context) ([]Conn, error)
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
}

// Varz is the part of /varz a rotation observes.
type Varz struct {
	ServerID        string    `json:"server_id"`
	ServerName      string    `json:"server_name"`
	ConfigLoadTime  time.Time `json:"config_load_time"`
	TLSCertNotAfter time.Time `json:"tls_cert_not_after"`
	Connections     int       `json:"connections"`
}

// Conn is one client connection in a server's view.
type Conn struct {
	Server string    `json:"server"`
	CID    uint64    `json:"cid"`
	Name   string    `json:"name,omitempty"`
	Start  time.Time `json:"start"`
	// CertSHA256 and SPKISHA256 are of the leaf the client presented.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	SPKISHA256 string `json:"spki_sha256,omitempty"`
	Subject    string `json:"subject,omitempty"`
}

// monitor reads /varz and /connz over HTTP.
type monitor struct {
	base   string
	client *http.Client
}

func newMonitor(base string) monitor {
	return monitor{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

func (m monitor) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (m monitor) varz(ctx context.Context) (Varz, error) {
	var v Varz
	if err := m.get(ctx, "/varz", &v); err != nil {
		return Varz{}, fmt.Errorf("rotation: varz %s: %w", m.base, err)
	}
	return v, nil
}

func (m monitor) connz(ctx context.Context, server string) ([]Conn, error) {
	const limit = 4096
	var out []Conn
	for offset := 0; ; offset += limit {
		var page struct {
			Total int `json:"total"`
			Conns []struct {
				Cid   uint64    `json:"cid"`
				Name  string    `json:"name"`
				Start time.Time `json:"start"`
				Certs []struct {
					Subject string `json:"subject"`
					SPKI    string `json:"spki_sha256"`
					Cert    string `json:"cert_sha256"`
				} `json:"tls_peer_certs"`
			} `json:"connections"`
		}
		q := "/connz?auth=true&limit=" + strconv.Itoa(limit) + "&offset=" + strconv.Itoa(offset)
		if err := m.get(ctx, q, &page); err != nil {
			return nil, fmt.Errorf("rotation: connz %s: %w", m.base, err)
		}
		for _, c := range page.Conns {
			conn := Conn{Server: server, CID: c.Cid, Name: c.Name, Start: c.Start}
			if len(c.Certs) > 0 {
				conn.CertSHA256, conn.SPKISHA256, conn.Subject = c.Certs[0].Cert, c.Certs[0].SPKI, c.Certs[0].Subject
			}
			out = append(out, conn)
		}
		if len(page.Conns) < limit || offset+limit >= page.Total {
			return out, nil
		}
	}
}

// EmbeddedServer is the in-process implementation of Server over a server
// of internal/embedded: it writes the server's ca_file, reloads with
// s.Reload, kicks with DisconnectClientByID and reads varz and connz from
// the monitoring endpoint, as on a host.
func EmbeddedServer(s *embedded.Server) Server {
	return &embeddedServer{s: s, mon: newMonitor(s.MonitorURL)}
}

type embeddedServer struct {
	s   *embedded.Server
	mon monitor
}

func (e *embeddedServer) Name() string      { return e.s.Name }
func (e *embeddedServer) ClientURL() string { return e.s.ClientURL }
func (e *embeddedServer) Varz(ctx context.Context) (Varz, error) {
	return e.mon.varz(ctx)
}
func (e *embeddedServer) Connz(ctx context.Context) ([]Conn, error) {
	return e.mon.connz(ctx, e.s.Name)
}
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
	mon   monitor
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
	h := &hostServer{spec: spec, name: spec.Name, plan: p, mon: newMonitor(spec.MonitorURL), roots: roots, certs: certs}
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

func (h *hostServer) Name() string      { return h.name }
func (h *hostServer) ClientURL() string { return h.spec.ClientURL }

func (h *hostServer) Varz(ctx context.Context) (Varz, error) {
	v, err := h.mon.varz(ctx)
	if err == nil {
		h.id = v.ServerID
	}
	return v, err
}

func (h *hostServer) Connz(ctx context.Context) ([]Conn, error) { return h.mon.connz(ctx, h.name) }

func (h *hostServer) ReadClientCA(ctx context.Context) ([]byte, error) {
	if h.spec.Deliver != nil {
		// A remote file is not read back; the rotation keeps its own copy.
		return nil, nil
	}
	b, err := os.ReadFile(h.plan.path(h.spec.CAFile))
	if err != nil {
		return nil, fmt.Errorf("rotation: %s: %w", h.name, err)
	}
	return b, nil
}

func (h *hostServer) WriteClientCA(ctx context.Context, bundle []byte) error {
	dst := h.plan.path(h.spec.CAFile)
	if h.spec.Deliver == nil {
		if err := pki.WriteFileAtomic(dst, bundle, 0o644); err != nil {
			return fmt.Errorf("rotation: %s: %w", h.name, err)
		}
		return nil
	}
	return deliverByCommand(ctx, h.plan, h.spec.Deliver, bundle, 0o644, map[string]any{
		"Server": h.name, "Dst": dst,
	})
}

func (h *hostServer) Reload(ctx context.Context) error {
	switch h.spec.Reload.Method {
	case ReloadNone:
		return nil
	case ReloadSignal:
		pid := h.spec.Reload.Pid
		if f := h.spec.Reload.PidFile; f != "" {
			b, err := os.ReadFile(h.plan.path(f))
			if err != nil {
				return fmt.Errorf("rotation: %s: reload: %w", h.name, err)
			}
			pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("rotation: %s: reload: pid file %s: %w", h.name, f, err)
			}
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
		if _, err := h.Varz(ctx); err != nil {
			return err
		}
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
