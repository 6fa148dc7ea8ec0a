package material

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// hub shares one fsnotify watcher among every FileSource of the process.
// Linux gives a user 128 inotify instances by default; a process with a
// hundred sources must not spend them all, nor collide with its neighbours.
//
// The hub's goroutine reads the watcher and hands each event to the sources
// watching its directory, without a lock and without blocking: a source
// only learns "something changed" through a one-slot channel, and reads the
// files itself.
type hub struct {
	w    *fsnotify.Watcher
	done chan struct{} // closed when run returns

	mu     sync.Mutex                               // serialises watch and unwatch
	refs   map[string]map[*FileSource]bool          // directory -> sources watching it
	routes atomic.Pointer[map[string][]*FileSource] // a copy of refs for run
}

// hubs holds the process's hub while any source uses it.
var hubs struct {
	mu    sync.Mutex
	h     *hub
	users int
}

// joinHub returns the process's hub, starting it for the first source.
func joinHub() (*hub, error) {
	hubs.mu.Lock()
	defer hubs.mu.Unlock()
	if hubs.h == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return nil, fmt.Errorf("material: watch: %w", err)
		}
		h := &hub{w: w, done: make(chan struct{}), refs: map[string]map[*FileSource]bool{}}
		h.publish()
		go h.run()
		hubs.h = h
	}
	hubs.users++
	return hubs.h, nil
}

// leave drops every watch of s and stops the hub when s was its last user.
func (h *hub) leave(s *FileSource, dirs map[string]bool) {
	for d := range dirs {
		h.unwatch(s, d)
	}
	hubs.mu.Lock()
	defer hubs.mu.Unlock()
	hubs.users--
	if hubs.users == 0 {
		_ = h.w.Close()
		<-h.done
		hubs.h = nil
	}
}

// watch makes sure dir is watched for s. Adding a watch that exists is
// harmless, and re-adds one that the watcher dropped because its directory
// was removed or moved.
func (h *hub) watch(s *FileSource, dir string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.w.Add(dir); err != nil {
		return err
	}
	if h.refs[dir] == nil {
		h.refs[dir] = map[*FileSource]bool{}
	}
	if !h.refs[dir][s] {
		h.refs[dir][s] = true
		h.publish()
	}
	return nil
}

// unwatch stops watching dir for s, and at all when no source needs it.
func (h *hub) unwatch(s *FileSource, dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.refs[dir][s] {
		return
	}
	delete(h.refs[dir], s)
	if len(h.refs[dir]) == 0 {
		delete(h.refs, dir)
		_ = h.w.Remove(dir) // fails when the directory is gone: nothing to undo
	}
	h.publish()
}

// publish copies refs for run. Called with mu held.
func (h *hub) publish() {
	routes := make(map[string][]*FileSource, len(h.refs))
	for d, ss := range h.refs {
		for s := range ss {
			routes[d] = append(routes[d], s)
		}
	}
	h.routes.Store(&routes)
}

// run hands events to sources until the watcher is closed.
func (h *hub) run() {
	defer close(h.done)
	for {
		select {
		case ev, ok := <-h.w.Events:
			if !ok {
				return
			}
			routes := *h.routes.Load()
			// An event names an entry of a watched directory, or a watched
			// directory itself (removed or moved).
			for _, s := range routes[filepath.Dir(ev.Name)] {
				s.notify(ev)
			}
			for _, s := range routes[ev.Name] {
				s.notify(ev)
			}
		case err, ok := <-h.w.Errors:
			if !ok {
				return
			}
			// The watcher lost events (an overflow) or failed: every source
			// must re-read to be sure.
			for _, ss := range *h.routes.Load() {
				for _, s := range ss {
					s.watchFailed(err)
				}
			}
		}
	}
}

// notify tells the source's loop that its files may have changed. It runs
// on the hub's goroutine, so it reads only what never changes and never
// blocks.
func (s *FileSource) notify(ev fsnotify.Event) {
	if s.relevant(ev) {
		select {
		case s.changed <- struct{}{}:
		default: // a change is already pending
		}
	}
}

// watchFailed hands a watcher error to the source's loop.
func (s *FileSource) watchFailed(err error) {
	select {
	case s.watchErr <- err:
	default:
	}
}

// relevant says whether an event may change what the files hold: a write,
// create, rename or removal of one of the files or of a kubelet ..data
// entry beside them, or of a directory on the way to them (which removes
// the files, or creates a directory that was missing).
func (s *FileSource) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod || ev.Op == 0 {
		return false
	}
	dir, base := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	if names, ok := s.bases[dir]; ok && (names[base] || strings.HasPrefix(base, "..")) {
		return true
	}
	for d := range s.bases {
		if d == ev.Name || strings.HasPrefix(d, ev.Name+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// ensureWatches watches every directory that holds a file; for a directory
// that does not exist, the nearest ancestor that does, to learn when it
// appears. It runs before every read, so a change made after the read is
// always seen.
//
// Only a missing directory is climbed past. A directory that exists but
// cannot be watched (the user's inotify watches are used up, ENOSPC, or
// permission is denied) is logged once and counted in the Metrics: its
// files' changes are then seen by the periodic re-check only, and not at
// all with the re-check off. Watching its parent instead would report
// nothing of its files' writes.
func (s *FileSource) ensureWatches() {
	want := map[string]bool{}
	failed := map[string]error{}
	for dir := range s.bases {
		for d := dir; !want[d]; d = filepath.Dir(d) {
			err := s.hub.watch(s, d)
			if err == nil {
				want[d] = true
				break
			}
			if !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
				failed[d] = err
				break
			}
		}
	}
	for d := range s.watching {
		if !want[d] {
			s.hub.unwatch(s, d)
		}
	}
	s.watching = want
	for d, err := range failed {
		if _, known := s.unwatched[d]; !known {
			s.cfg.logger.Warn("material: cannot watch directory; only the periodic re-check sees its changes",
				"source", s.name, "dir", d, "err", err, "recheck", s.cfg.recheck)
		}
	}
	for d := range s.unwatched {
		if _, still := failed[d]; !still {
			s.cfg.logger.Info("material: watching directory again", "source", s.name, "dir", d)
		}
	}
	s.unwatched = failed
	if s.cfg.metrics != nil {
		s.cfg.metrics.setUnwatched(s.name, len(failed))
	}
}
