// Package material says where a process's TLS material comes from at run
// time: the certificate it presents and the roots it verifies its peer
// with.
//
// A Source hands them out through Cert and RootCAs, which have the shape
// of nats.go's ClientTLSConfig callbacks, tells subscribers of every load
// outcome, and describes what it serves in a Snapshot. StaticSource loads
// once, as start-up-loaded clients do. FileSource watches the files'
// directories, survives rename-over writes and Kubernetes Secret volume
// updates, validates a new set before it swaps it in, and keeps the last
// good set when a new one does not validate.
//
// Usage:
//
//	metrics := material.NewMetrics()
//	prometheus.MustRegister(metrics) // once, for every source
//
//	src, err := material.NewFileSource(ctx, material.Files{
//		Cert:  os.Getenv("NATS_TLS_CERT"),
//		Key:   os.Getenv("NATS_TLS_KEY"),
//		Roots: os.Getenv("NATS_TLS_CA"),
//	}, material.WithMetrics(metrics, "nats"), material.WithWaitForFiles())
//	if err != nil {
//		return err // errors.Is(err, pki.ErrUnreadable) or pki.ErrInvalid
//	}
//	defer src.Close()
//	nc, err := nats.Connect(url, nats.ClientTLSConfig(src.Cert, src.RootCAs))
//
// A set is all the files together: a certificate whose key is not yet
// written, or roots that do not parse, hold the whole set back, and the
// next file-system event, re-check or Refresh tries again. Writers should
// still write the key before the certificate, each renamed over the old
// file (pki.Leaf.WriteFiles does).
//
// All FileSources of a process share one fsnotify watcher (Linux allows a
// user 128 inotify instances by default), started with the first source
// and stopped with the last Close. A directory that exists but cannot be
// watched (the user's inotify watches used up, permission denied) is
// logged and counted in natscert_material_unwatched_directories; its files
// are then re-read by the periodic re-check only.
//
// Cert and RootCAs do no file I/O and take no lock: they read an atomic
// pointer to an immutable set. A caller that needs the certificate, the
// roots and their Snapshot together (to know which generation a dial
// presents) reads them as one Set with CurrentOf(src): three separate
// calls can straddle a swap. Every outcome (loaded, rejected with its
// reason, unchanged) goes to subscribers, to log/slog and to the Metrics
// collector. A re-read that finds the same bytes is unchanged and does not
// bump Snapshot.Generation.
package material
