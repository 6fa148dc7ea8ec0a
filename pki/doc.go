// Package pki issues, bundles, fingerprints and inspects the X.509 material
// that NATS mutual TLS runs on.
//
// It is the base of natscert and imports no other package of the project.
// Issuing is meant for drills, tests and staging set-ups; inspection is meant
// for production material.
//
// Issue a CA and a client leaf, write them, and check them:
//
//	ca, err := pki.NewCA("clients CA 2026")
//	if err != nil { ... }
//	leaf, err := ca.Issue("orders-7", pki.RoleClient, pki.WithDNSNames("orders-7.svc"))
//	if err != nil { ... }
//	if err := leaf.WriteFiles("client.pem", "client-key.pem"); err != nil { ... }
//	if err := pki.WriteFileAtomic("ca.pem", ca.CertPEM, 0o644); err != nil { ... }
//
//	rep, err := pki.Inspect(pki.InspectInput{
//		CertFile: "client.pem", KeyFile: "client-key.pem",
//		IssuerFile: "ca.pem", Role: pki.RoleClient,
//	})
//	if err != nil { ... } // a file could not be read at all
//	for _, f := range rep.Findings { fmt.Println(f) }
//
// Fingerprints are computed exactly as nats-server reports them in
// /connz?auth=true (tls_peer_certs): CertSHA256 and SPKISHA256.
package pki
