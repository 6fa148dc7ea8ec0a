// Package rotation rotates the client CA of a NATS fleet through observed
// phases: each phase starts only after the previous one was observed on
// every server, never assumed.
//
//  1. preflight: material inspected, every server readable, every member
//     present, the budget within the SLA;
//  2. trust_both: ca_file = what it held + the new client CA (every other
//     CA it trusts kept), reload, config_load_time
//     changed and probes under both CAs accepted on every server;
//  3. server_roots (when material.new_server_ca is set: a server CA
//     rotation): every member's roots file = old+new server CA, wave by
//     wave; a reload-mode member's log must show it loaded roots holding
//     both (bus logs "nats material loaded" with the roots'
//     fingerprints), a restart-mode member is restarted and must
//     reconnect;
//  4. server_certs (when material.server_certs is set): each server's own
//     leaf renewed from the same server CA, or issued by the new one,
//     reloaded; every server shows the new tls_cert_not_after and
//     presents the new leaf to a probe, and no member connection is lost;
//  5. server_reconnect and server_roots_new (server CA rotation): every
//     member connection is kicked and each member must come back, which
//     its handshake with the new server certificate proves it trusts;
//     then the roots become the new server CA only, observed as above,
//     and a second kick round must come back too. A member that fails the
//     first round stops the rotation with every root still old+new;
//  6. waves: per workload, deliver new leaves, restart (restart mode) or
//     let members reload (reload mode), then gate: the wave's members
//     present the new fingerprint in every server's view, settled; log
//     lines and checks within limits. A failed gate pauses (ErrPaused) or
//     stops the run (ErrGateFailed); neither rolls anything back;
//  7. converged: every member on new material, settled;
//  8. revoke: ca_file = that bundle without the old client CA (or, when
//     old and new client CA are the same, pinned_certs = the new leaves only, which the reload
//     enforces on live connections too), reload; every connection still
//     presenting old material is kicked and its member must come back on
//     new material;
//  9. proof: on every server, in the same step, a probe presenting the old
//     leaf is refused (in the TLS handshake; after it, with pinned_certs)
//     and a probe presenting the new one completes CONNECT/PING/PONG.
//
// Every observation goes through package fleet, over the servers'
// monitoring endpoints.
//
// Every step is written to a journal (fsync) before and after it acts.
// Resume re-observes a step left in doubt instead of repeating it, and
// never repeats a completed restart; Abort, before revoke, restores the
// old trust and material, and, before the old server CA leaves the
// members' roots, the servers' old certificates and the members' roots.
// One Run, Resume or Abort at a time holds the state directory's lock;
// another, in this process or any other, fails with ErrInProgress.
//
// A Plan comes from a YAML file (LoadPlan; docs/plan.md) or is built in
// code. Servers are reached through the Server interface: HostServer
// (files, SIGHUP or a command or $SYS reload, the monitoring endpoint) or
// EmbeddedServer (in-process servers of internal/embedded). Members are
// moved through the Target interface: CommandTarget (the plan's commands
// and local files) or the caller's own.
//
// In-process, as the drill runs it:
//
//	plan := &rotation.Plan{
//		Name: "clients-2026",
//		StateDir: dir,
//		Material: rotation.Material{
//			ServerCA: cluster.ServerCAFile(),
//			OldClientCA: "old-ca.pem", OldClientCAKey: "old-ca-key.pem",
//			NewClientCA: "new-ca.pem", NewClientCAKey: "new-ca-key.pem",
//		},
//		Workloads: []rotation.Workload{{
//			Name: "api", Mode: rotation.ModeReload,
//			Waves: rotation.WaveSpec{Size: 2},
//			Members: []rotation.MemberSpec{
//				{Name: "api-1", CertFile: "api-1.pem", KeyFile: "api-1-key.pem"},
//				{Name: "api-2", CertFile: "api-2.pem", KeyFile: "api-2-key.pem"},
//			},
//		}},
//	}
//	var servers []rotation.Server
//	for _, s := range cluster.Servers {
//		servers = append(servers, rotation.EmbeddedServer(s))
//	}
//	r, err := rotation.New(plan, rotation.WithServers(servers...),
//		rotation.WithEvents(func(e rotation.Event) { log.Println(e.Kind, e.Phase, e.Detail) }))
//	if err != nil { ... }
//	res, err := r.Run(ctx) // res.Phases, res.Waves, res.Proof
//
// Restart-mode workloads need a Target (WithTarget) or a restart command.
// Errors wrap the sentinels ErrPlan, ErrGateFailed, ErrPaused,
// ErrPhaseFailed, ErrIncomplete, ErrInterrupted, ErrInProgress and
// ErrNotResumable; the CLI maps them to exit codes 2, 1, 4, 1, 3, 4, 2, 2.
package rotation
