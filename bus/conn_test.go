package bus

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natscert/natscert/internal/memsource"
)

func TestConnectPublishSubscribeRequest(t *testing.T) {
	f := newFixture(t, 1, false)
	leaf := f.issue(f.ca, "member-1")
	f.write(leaf)
	src := f.source()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, f.urls(), WithSource(src), WithName("member-1"), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 10)
	if _, err := c.Subscribe("fan", func(m *nats.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueSubscribe("svc", "svc", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("fan", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	r, err := c.Request("svc", []byte("ping"), 5*time.Second)
	if err != nil || string(r.Data) != "pong" {
		t.Fatalf("request: %v %v", r, err)
	}
	st := c.Status()
	if !st.Connected || st.Presented == nil || st.Presented.CertSHA256 != fp(leaf) || st.ConnectedAt.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Roots) != 1 || st.TLSName != "127.0.0.1" {
		t.Fatalf("roots %v tls name %q", st.Roots, st.TLSName)
	}
	if p := f.presented("member-1"); len(p) != 1 || p[0] != fp(leaf) {
		t.Fatalf("connz presented %v, want %s", p, fp(leaf))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, rerr := c.Request("svc", nil, time.Second)
	for _, err := range []error{c.Publish("fan", nil), rerr, c.Flush()} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("after Close: %v, want ErrClosed wrapping nats.ErrConnectionClosed", err)
		}
	}
}

func TestEnvRequiresCertAndKeyTogether(t *testing.T) {
	_, err := ReadEnv(func(k string) string {
		return map[string]string{EnvURL: "tls://localhost:4222", EnvCert: "/x/tls.crt"}[k]
	})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	e, err := ReadEnv(func(k string) string {
		return map[string]string{EnvStrategy: "swap", EnvSpread: "3s"}[k]
	})
	if err != nil || e.Strategy != StrategySwap || e.Spread != 3*time.Second || e.URL != "nats://127.0.0.1:4222" {
		t.Fatalf("env %+v err %v", e, err)
	}
	if _, err := ReadEnv(func(k string) string { return map[string]string{EnvSpread: "soon"}[k] }); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad duration: %v", err)
	}
}

// A nats:// URL with NATS_TLS_* set uses TLS with those files, as
// nats.Secure does for services today: the server sees the certificate.
func TestEnvTLSWithNATSScheme(t *testing.T) {
	f := newFixture(t, 1, false)
	leaf := f.issue(f.ca, "env-member")
	f.write(leaf)
	url := strings.Replace(f.cluster.Servers[0].ClientURL, "tls://", "nats://", 1)
	e, err := ReadEnv(func(k string) string {
		return map[string]string{EnvURL: url, EnvCA: f.caFile, EnvCert: f.certFile, EnvKey: f.keyFile, EnvClientName: "env-member"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := e.Connect(ctx, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := f.presented("env-member"); len(p) != 1 || p[0] != fp(leaf) {
		t.Fatalf("connz presented %v, want %s", p, fp(leaf))
	}
}

// Close from a failure handler and Drain from a swap handler return:
// neither waits for the goroutine that calls the handlers.
func TestCloseFromHandler(t *testing.T) {
	f := newFixture(t, 1, false)
	rootsPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	src := memsource.New(f.issue(f.ca, "member"), rootsPEM)
	closed := make(chan error, 2)
	var c, d *Conn
	c = connectTest(t, f, "closer", WithSource(src), WithFailureHandler(func(fl Failure) {
		if fl.Reason == ReasonDisconnected {
			closed <- c.Close()
		}
	}))
	d = connectTest(t, f, "drainer", WithSource(src), WithStrategy(StrategySwap), WithSpread(0),
		WithSwapHandler(func(SwapReport) { closed <- d.Drain(context.Background()) }))
	f.kick("closer")
	src.Set(f.issue(f.ca, "member"), rootsPEM)
	for range 2 {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Close or Drain from a handler did not return")
		}
	}
}
