// Package bus connects to NATS with TLS material from a material.Source
// and keeps the connection up across certificate rotations: it picks up
// new certificates without a restart, backs off without storming, and
// never gives up.
//
// Configured from the environment, compatible with existing deployments
// (NATS_URL, NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY, NATS_CLIENT_NAME,
// and NATSCERT_* for what is new):
//
//	nc, err := bus.ConnectFromEnv(ctx, bus.WithLogger(logger))
//	if err != nil {
//		return err // errors.Is(err, bus.ErrConfig) for bad variables
//	}
//	defer nc.Close()
//	sub, err := nc.QueueSubscribe("svc.ping", "svc", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) })
//	...
//	err = nc.Publish("svc.events", data)
//	fmt.Println(nc.Status().Presented.CertSHA256) // what the server sees now
//
// Or with a source of one's own:
//
//	src, err := material.NewFileSource(ctx, material.Files{Cert: c, Key: k, Roots: ca})
//	nc, err := bus.Connect(ctx, "tls://nats.example:4222", bus.WithSource(src),
//		bus.WithStrategy(bus.StrategySwap), bus.WithMetrics(metrics))
//
// What happens when the source loads new material while connected is the
// Strategy: StrategyNone waits for the next natural reconnect,
// StrategyReconnect calls ForceReconnect after a random delay inside the
// spread window, StrategySwap dials a second connection to the same
// server, moves the subscriptions and drains the old one
// (make-before-break). Before it unsubscribes the old connection, a swap
// observes that the old connection's server knows the new subscriptions:
// a probe subject (in the connection's inbox prefix), subscribed last on
// the new connection, published through the old one, must arrive. When
// the same server cannot be had (it takes no new connections, or a load
// balancer picked another), the swap goes to another server and keeps
// both connections subscribed for the longer cross-server grace, margin
// for publishers on a third server, which learn the new subscriptions
// over another route. The swaps of one process dial through a shared,
// adaptive SwapLimiter. A connection that is not connected when new
// material lands retries with it at once, whatever the strategy.
//
// The swap promise: no message is lost by any subscription made through
// bus, plain or queue group, and no request made through bus fails
// because of the swap. A plain subscription may receive a message twice
// while both connections are subscribed (counted as OverlapDeliveries,
// bounded by each SwapReport's window); a few messages from publishers on
// other connections may arrive out of order, which bus cannot know.
//
// Reconnects never give up (MaxReconnects(-1), IgnoreAuthErrorAbort). The
// wait before each attempt — per attempt, every server counted, not per
// pass over the servers as nats.go's ReconnectWait — is random in
// [0, min(max, min·2ⁿ)) and resets after a good connection. A failed
// handshake re-reads the source at once; if the material changed, the
// next attempt goes at once.
//
// Every failure goes to one handler (WithFailureHandler), to log/slog and
// to the Metrics collector by Reason, including the failures nats.go
// reports through no callback: bus follows every attempt through its own
// dialer and TLS callbacks. Log lines keep the phrases runbooks grep for:
// "disconnected from nats", "reconnected to nats".
package bus
