package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nats-server/v2/logger"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/natscert/natscert/pki"
)

// System account credentials configured on every embedded server.
const (
	SystemUser     = "sys"
	SystemPassword = "sys-drill-only"
)

// Options describe a cluster to start.
type Options struct {
	// Dir holds every server's configuration and material; it is created
	// when missing. Required.
	Dir string
	// Servers is the number of servers; more than one forms a cluster
	// with routes on loopback. Default 1.
	Servers int
	// ClientCA is the PEM bundle the servers trust for client
	// certificates (ca_file). Required.
	ClientCA []byte
	// ServerCA issues the servers' own certificates; generated when nil.
	ServerCA *pki.CA
	// DNSOnly issues server certificates with the DNS name "localhost"
	// only (no IP SANs), so clients must verify by host name.
	DNSOnly bool
	// ClusterName defaults to "natscert".
	ClusterName string
	// HandshakeTimeout is the server's TLS handshake timeout; default 2 s,
	// as nats-server's own default.
	HandshakeTimeout time.Duration
	// Debug turns on the servers' debug log (to stderr).
	Debug bool
	// Log turns on the servers' notice log (to stderr).
	Log bool
}

// Cluster is a set of running embedded servers.
type Cluster struct {
	Servers  []*Server
	ServerCA *pki.CA
	Dir      string
}

// Server is one embedded nats-server and its files.
type Server struct {
	Name string
	// ClientURL is tls://localhost:PORT (or 127.0.0.1 when not DNSOnly).
	ClientURL string
	// MonitorURL is the HTTP monitoring endpoint, http://127.0.0.1:PORT.
	MonitorURL string
	ConfigFile string
	CertFile   string
	KeyFile    string
	// CAFile is ca_file: the client-trust bundle.
	CAFile string
	// TLSExtraFile is included inside the tls block (by its base name,
	// relative to ConfigFile); it starts empty and
	// exists so that a rotation can own settings such as pinned_certs.
	TLSExtraFile string

	Port, HTTPPort, ClusterPort int

	// NATS is the running server; nil while stopped.
	NATS *server.Server
	opts Options
}

// Start writes configuration and material for each server and starts them,
// returning once every server accepts connections and, in a cluster, every
// route is up.
func Start(o Options) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("embedded: Options.Dir is required")
	}
	if len(o.ClientCA) == 0 {
		return nil, errors.New("embedded: Options.ClientCA is required")
	}
	if o.Servers < 1 {
		o.Servers = 1
	}
	if o.ClusterName == "" {
		o.ClusterName = "natscert"
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 2 * time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	c := &Cluster{ServerCA: o.ServerCA, Dir: o.Dir}
	if c.ServerCA == nil {
		ca, err := pki.NewCA("natscert embedded server CA")
		if err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		c.ServerCA = ca
	}
	if err := pki.WriteFileAtomic(filepath.Join(o.Dir, "server-ca.pem"), c.ServerCA.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	for i := 0; i < o.Servers; i++ {
		name := "n" + strconv.Itoa(i+1)
		dir := filepath.Join(o.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		s := &Server{
			Name: name, opts: o,
			ConfigFile:   filepath.Join(dir, "nats-server.conf"),
			CertFile:     filepath.Join(dir, "server.pem"),
			KeyFile:      filepath.Join(dir, "server-key.pem"),
			CAFile:       filepath.Join(dir, "client-ca.pem"),
			TLSExtraFile: filepath.Join(dir, "tls-extra.conf"),
		}
		leaf, err := s.IssueCertificate(c.ServerCA)
		if err != nil {
			return nil, err
		}
		if err := leaf.WriteFiles(s.CertFile, s.KeyFile); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		if err := pki.WriteFileAtomic(s.CAFile, o.ClientCA, 0o644); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		if err := pki.WriteFileAtomic(s.TLSExtraFile, nil, 0o644); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		c.Servers = append(c.Servers, s)
	}
	// The ports are free when picked, not reserved: another process (go
	// test runs packages in parallel, each starting clusters) can take one
	// before a server listens on it. Try again on new ports.
	var err error
	for range startAttempts {
		if err = c.start(); !errors.Is(err, errListen) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// startAttempts bounds how often Start picks new ports after a server
// could not listen on one.
const startAttempts = 5

// pickPorts is freePorts; tests replace it to hand out a taken port.
var pickPorts = freePorts

// start picks ports, writes every configuration and starts the servers,
// stopping them all again when one fails.
func (c *Cluster) start() error {
	ports, err := pickPorts(3 * len(c.Servers))
	if err != nil {
		return err
	}
	for i, s := range c.Servers {
		s.Port, s.HTTPPort, s.ClusterPort = ports[3*i], ports[3*i+1], ports[3*i+2]
		host := "127.0.0.1"
		if s.opts.DNSOnly {
			host = "localhost"
		}
		s.ClientURL = fmt.Sprintf("tls://%s:%d", host, s.Port)
		s.MonitorURL = fmt.Sprintf("http://127.0.0.1:%d", s.HTTPPort)
	}
	for _, s := range c.Servers {
		if err := s.writeConfig(c.Servers); err != nil {
			return err
		}
	}
	for _, s := range c.Servers {
		if err := s.Start(); err != nil {
			c.Close()
			return err
		}
	}
	if err := c.waitRoutes(10 * time.Second); err != nil {
		c.Close()
		return err
	}
	return nil
}

// IssueCertificate issues a server leaf for s from ca, with the SANs the
// cluster's clients verify.
func (s *Server) IssueCertificate(ca *pki.CA, opts ...pki.Option) (*pki.Leaf, error) {
	sans := []pki.Option{pki.WithDNSNames("localhost")}
	if !s.opts.DNSOnly {
		sans = append(sans, pki.WithIPs(net.IPv4(127, 0, 0, 1)))
	}
	leaf, err := ca.Issue("natscert embedded "+s.Name, pki.RoleServer, append(sans, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("embedded: issue server certificate: %w", err)
	}
	return leaf, nil
}

var configTemplate = template.Must(template.New("conf").Parse(`# written by natscert's embedded package
server_name: {{.S.Name}}
listen: "127.0.0.1:{{.S.Port}}"
http: "127.0.0.1:{{.S.HTTPPort}}"
{{if .Debug}}debug: true
{{end}}
tls {
  cert_file: "{{.S.CertFile}}"
  key_file: "{{.S.KeyFile}}"
  ca_file: "{{.S.CAFile}}"
  verify: true
  timeout: {{.Timeout}}
  include "{{.ExtraBase}}"
}

accounts {
  SYS { users: [ { user: "{{.SysUser}}", password: "{{.SysPassword}}" } ] }
  APP { users: [ { user: "app", password: "app-unused" } ] }
}
system_account: SYS
no_auth_user: app
{{if .Routes}}
cluster {
  name: "{{.ClusterName}}"
  listen: "127.0.0.1:{{.S.ClusterPort}}"
  routes: [{{range $i, $r := .Routes}}{{if $i}}, {{end}}"nats-route://{{$r}}"{{end}}]
}
{{end}}`))

func (s *Server) writeConfig(all []*Server) error {
	var routes []string
	if len(all) > 1 {
		for _, o := range all {
			if o != s {
				routes = append(routes, fmt.Sprintf("127.0.0.1:%d", o.ClusterPort))
			}
		}
	}
	// In the order a reload sorts them (by URL string): a reload then
	// leaves the running server's route list as it is, instead of
	// reordering it under the goroutines that dial the routes (a data race
	// inside nats-server that -race reports).
	slices.Sort(routes)
	var buf bytes.Buffer
	err := configTemplate.Execute(&buf, map[string]any{
		"S": s, "Routes": routes, "ClusterName": s.opts.ClusterName, "ExtraBase": filepath.Base(s.TLSExtraFile),
		"Timeout": strconv.FormatFloat(s.opts.HandshakeTimeout.Seconds(), 'f', -1, 64),
		"SysUser": SystemUser, "SysPassword": SystemPassword, "Debug": s.opts.Debug,
	})
	if err != nil {
		return fmt.Errorf("embedded: config for %s: %w", s.Name, err)
	}
	return pki.WriteFileAtomic(s.ConfigFile, buf.Bytes(), 0o644)
}

// errListen marks a server that could not listen on one of its ports.
var errListen = errors.New("cannot listen")

// Start starts (or restarts) the server from its configuration file. A
// port it cannot listen on fails Start at once with the server's reason.
func (s *Server) Start() error {
	opts, err := server.ProcessConfigFile(s.ConfigFile)
	if err != nil {
		return fmt.Errorf("embedded: %s: %w", s.Name, err)
	}
	opts.NoSigs = true
	opts.NoLog = true // the log goes through startLogger
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded: %s: %w", s.Name, err)
	}
	log := &startLogger{fatal: make(chan string, 1)}
	if s.opts.Log || s.opts.Debug {
		log.out = logger.NewStdLogger(true, s.opts.Debug, false, true, true)
	}
	ns.SetLoggerV2(log, s.opts.Debug, false, false)
	ns.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !ns.ReadyForConnections(25 * time.Millisecond) {
		select {
		case msg := <-log.fatal:
			ns.Shutdown()
			ns.WaitForShutdown()
			return fmt.Errorf("embedded: %s: %w: %s", s.Name, errListen, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			ns.WaitForShutdown()
			return fmt.Errorf("embedded: %s: not ready for connections within 10s", s.Name)
		}
	}
	s.NATS = ns
	return nil
}

// startLogger passes a server's log on when Options ask for one, and keeps
// its first fatal message: nats-server reports a port it cannot listen on
// only through Fatalf (and the standard logger's Fatalf exits the process),
// then runs on without that listener.
type startLogger struct {
	out   server.Logger // nil: no log
	fatal chan string   // one slot
}

func (l *startLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.out != nil {
		l.out.Errorf("%s", msg)
	}
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l *startLogger) Noticef(format string, v ...any) { l.logf(server.Logger.Noticef, format, v) }
func (l *startLogger) Warnf(format string, v ...any)   { l.logf(server.Logger.Warnf, format, v) }
func (l *startLogger) Errorf(format string, v ...any)  { l.logf(server.Logger.Errorf, format, v) }
func (l *startLogger) Debugf(format string, v ...any)  { l.logf(server.Logger.Debugf, format, v) }
func (l *startLogger) Tracef(format string, v ...any)  { l.logf(server.Logger.Tracef, format, v) }

func (l *startLogger) logf(f func(server.Logger, string, ...any), format string, v []any) {
	if l.out != nil {
		f(l.out, format, v...)
	}
}

// Stop shuts the server down and waits for it; Start brings it back on the
// same ports and files.
func (s *Server) Stop() {
	if s.NATS == nil {
		return
	}
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
	s.NATS = nil
}

// Reload re-reads the configuration file and the files it names, as
// SIGHUP does for a nats-server process.
func (s *Server) Reload() error {
	if s.NATS == nil {
		return fmt.Errorf("embedded: %s: reload: server is stopped", s.Name)
	}
	if err := s.NATS.Reload(); err != nil {
		return fmt.Errorf("embedded: %s: reload: %w", s.Name, err)
	}
	return nil
}

// SetClientCA writes the client-trust bundle (ca_file) and reloads.
func (s *Server) SetClientCA(bundle []byte) error {
	if err := pki.WriteFileAtomic(s.CAFile, bundle, 0o644); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return s.Reload()
}

// SetCertificate writes the server's own certificate and key and reloads.
func (s *Server) SetCertificate(leaf *pki.Leaf) error {
	if err := leaf.WriteFiles(s.CertFile, s.KeyFile); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return s.Reload()
}

// ClientURLs lists every server's client URL.
func (c *Cluster) ClientURLs() []string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.ClientURL)
	}
	return urls
}

// MonitorURLs lists every server's monitoring URL.
func (c *Cluster) MonitorURLs() []string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.MonitorURL)
	}
	return urls
}

// ServerCAFile is the PEM file of the CA that issued the servers' certificates.
func (c *Cluster) ServerCAFile() string { return filepath.Join(c.Dir, "server-ca.pem") }

// Close shuts every server down.
func (c *Cluster) Close() {
	for _, s := range c.Servers {
		s.Stop()
	}
}

func (c *Cluster) waitRoutes(timeout time.Duration) error {
	if len(c.Servers) < 2 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, s := range c.Servers {
			if s.NATS != nil && s.NATS.NumRoutes() < len(c.Servers)-1 {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			var got []string
			for _, s := range c.Servers {
				got = append(got, fmt.Sprintf("%s=%d", s.Name, s.NATS.NumRoutes()))
			}
			return fmt.Errorf("embedded: routes not up within %s (%s)", timeout, strings.Join(got, " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePorts asks the kernel for n distinct free loopback ports. One can be
// taken between this call and the server's listen; Start then tries again.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedded: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
