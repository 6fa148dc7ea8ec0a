// Package memsource is a material.Source held in memory whose material a
// test sets: one Source shared by many clients, so that one Set reaches
// them all at once, as new files reach a fleet. bus's and bench's tests
// use it.
//
//	src := memsource.New(leaf, rootsPEM)
//	c, err := bus.Connect(ctx, url, bus.WithSource(src))
//	...
//	src.Set(next, rootsPEM) // every subscriber gets an EventLoaded
package memsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"time"

	"github.com/natscert/natscert/material"
	"github.com/natscert/natscert/pki"
)

// Source serves the last material Set, with a generation that grows by
// one every Set.
type Source struct {
	mu   sync.Mutex
	cur  material.Set
	subs map[int]func(material.Event)
	next int
}

var (
	_ material.Source    = (*Source)(nil)
	_ material.Currenter = (*Source)(nil)
)

// New serves leaf and the roots in rootsPEM, as generation 1.
func New(leaf *pki.Leaf, rootsPEM []byte) *Source {
	s := &Source{subs: map[int]func(material.Event){}}
	s.Set(leaf, rootsPEM)
	return s
}

// Set serves leaf and the roots in rootsPEM from now on and tells every
// subscriber, on the caller's goroutine.
func (s *Source) Set(leaf *pki.Leaf, rootsPEM []byte) {
	roots, _ := pki.ParseCertificates(rootsPEM)
	set := material.NewStaticSource(leaf.TLSCertificate(), roots).Current()
	s.mu.Lock()
	set.Snapshot.Generation = s.cur.Snapshot.Generation + 1
	s.cur = set
	fns := make([]func(material.Event), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(material.Event{Kind: material.EventLoaded, Time: time.Now(), Reason: "set", Snapshot: set.Snapshot})
	}
}

// Current returns the material served now, in one read.
func (s *Source) Current() material.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Cert returns the certificate served now.
func (s *Source) Cert() (tls.Certificate, error) { return s.Current().Cert, nil }

// RootCAs returns the roots served now.
func (s *Source) RootCAs() (*x509.CertPool, error) { return s.Current().Roots, nil }

// Snapshot describes the material served now.
func (s *Source) Snapshot() material.Snapshot { return s.Current().Snapshot }

// Subscribe calls fn on every Set until cancel is called.
func (s *Source) Subscribe(fn func(material.Event)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// Refresh does nothing: only Set changes the material.
func (s *Source) Refresh(ctx context.Context) error { return ctx.Err() }

// Close does nothing.
func (s *Source) Close() error { return nil }
