// Package embedded runs NATS servers in-process with mutual TLS, each from
// its own configuration file, for drills and tests.
//
// Every server is started from a file exactly as nats-server would be on a
// host (ca_file, cert_file, key_file, verify: true), so a reload re-reads
// those files: tests and the drill exercise the same reload path operators
// use. Each server also has a system account (user "sys") for $SYS
// requests, and application clients land in the APP account through
// no_auth_user.
//
//	ca, _ := pki.NewCA("clients")
//	c, err := embedded.Start(embedded.Options{Dir: dir, Servers: 3, ClientCA: ca.CertPEM})
//	if err != nil { ... }
//	defer c.Close()
//	url := c.Servers[0].ClientURL // tls://127.0.0.1:PORT (tls://localhost:PORT with DNSOnly)
package embedded
