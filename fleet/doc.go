// Package fleet is the servers' view of a rotation: every client
// connection and the certificate it presented, across one server or a
// whole cluster, classified against the old and new material, and a
// verdict on whether the fleet has converged.
//
// The view comes from nats-server itself: /connz?auth=true lists, per
// connection, tls_peer_certs[] with cert_sha256 and spki_sha256; /varz
// gives each server's name, config_load_time and tls_cert_not_after. A
// MonitorSource reads them over HTTP from the URLs given; a SystemSource
// asks every server of a cluster through the system account
// ($SYS.REQ.SERVER.PING.VARZ, then $SYS.REQ.SERVER.<id>.CONNZ).
//
// Rules the verdict rests on:
//
//   - Pages of connz are separate snapshots. A look scans every server,
//     page by page, and scans again until two consecutive scans agree on
//     the set of (server, cid, certificate) and each was internally
//     consistent; if they never agree within WithScans the status is
//     Incomplete, never a wrong count presented as complete.
//   - Counts are of members, not rows: a named member seen more than once
//     (it reconnected, perhaps to another server) counts once, its newest
//     connection winning; the older ones are listed as superseded. A
//     superseded connection still on old material is still presenting
//     it: the verdict is not Converged until it is gone.
//     Unnamed connections are grouped by leaf fingerprint and each counts:
//     replicas sharing a leaf are told apart only by their number.
//   - System-account connections (the collector's own among them) are
//     listed but never counted or judged.
//   - A server that must answer and did not, or an expected member not
//     seen, makes the status Incomplete.
//   - Converged needs the view unchanged for the settle window: under
//     overload a server can still list connections their clients have
//     already abandoned.
//
// Wait until a cluster has moved to the new client material:
//
//	nc, err := fleet.DialSystem(ctx, "tls://nats-1:4222", fleet.SystemAuth{
//		User: "sys", Password: pw,
//		CertFile: "sys.pem", KeyFile: "sys-key.pem", CAFile: "server-ca.pem",
//	})
//	if err != nil { ... }
//	defer nc.Close()
//	oldM, err := fleet.ReadMaterial("old/")   // leaves, bundles, fingerprints
//	newM, err := fleet.ReadMaterial("new/")
//	obs, err := fleet.New(fleet.System(nc),
//		fleet.WithOld(oldM), fleet.WithNew(newM),
//		fleet.WithExpectServers(3),
//		fleet.WithExpectMembers(fleet.Member{Name: "orders-1"}, fleet.Member{Name: "orders-2"}),
//	)
//	if err != nil { ... }
//	st, err := obs.Wait(ctx, func(st *fleet.Status) {
//		log.Printf("%s: new=%d old=%d", st.Verdict, st.Counts.New, st.Counts.Old)
//	})
//	if errors.Is(err, fleet.ErrIncomplete) { ... } // a server or member unseen
//
// Or look once over HTTP: fleet.New(fleet.Monitor("http://nats-1:8222",
// "http://nats-2:8222")) and obs.Check(ctx).
package fleet
