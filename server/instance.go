package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flowbot/flowbot/store"
)

// An instance's identity: claims on contacts' unsent messages are made in
// its name, so that a process restarted under the same id (the host name
// by default) takes its own claims back at once instead of waiting them
// out. One process holds an id at a time, proven by a heartbeat in the
// store: an id whose heartbeat is fresh is refused, and the id of a
// process that died is taken back once its heartbeat lapsed (three
// heartbeats).

// DefaultInstanceID is the host name (or "flowbot" without one) and the
// address the instance listens on ("" for none), as given: stable across
// restarts, and apart for two instances on one host ("web1:8080",
// "web1:8081", "web1/10.0.0.5:8080").
func DefaultInstanceID(addr string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "flowbot"
	}
	switch {
	case addr == "":
		return h
	case strings.HasPrefix(addr, ":"):
		return h + addr
	}
	return h + "/" + addr
}

// identity is the id this process holds and the proof of holding it.
type identity struct {
	id    string
	nonce string // this process, among those that use the id
	// lastBeat is when the latest heartbeat was written (unix nanos): the
	// instance sends only while it is sure to hold its id.
	lastBeat atomic.Int64
}

func newIdentity(id string) *identity {
	var b [8]byte
	rand.Read(b[:])
	return &identity{id: id, nonce: hex.EncodeToString(b[:])}
}

// lapse is how long a heartbeat holds the id.
func (s *Server) lapse() time.Duration { return 3 * s.cfg.Heartbeat }

// takeID takes the instance id at start-up: at once when it is free, else
// once the holder's heartbeat has lapsed (a process that died); an id
// whose heartbeat is renewed meanwhile belongs to a live instance, and
// is refused.
func (s *Server) takeID(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		now := time.Now()
		err := s.store.Beat(ctx, s.id.id, s.id.nonce, now, now.Add(s.lapse()))
		var held *store.HeldError
		switch {
		case err == nil:
			s.id.lastBeat.Store(now.UnixNano())
			return nil
		case !errors.As(err, &held):
			return fmt.Errorf("taking instance id %q: %w", s.id.id, err)
		case attempt > 0:
			return fmt.Errorf("instance id %q is in use by a live instance (its heartbeat is fresh): give each instance its own --instance-id (the default is the host name and the listen address)", s.id.id)
		}
		wait := min(time.Until(held.Until), s.lapse()) + s.cfg.Heartbeat/4
		s.log.Info("instance id held by another process, maybe one that died: waiting for its heartbeat to lapse", "instance", s.id.id, "wait", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// heartbeat keeps the instance id until Shutdown, then gives it up.
func (s *Server) heartbeat(stopping <-chan struct{}) {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stopping:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.lapse())
		now := time.Now()
		err := s.store.Beat(ctx, s.id.id, s.id.nonce, now, now.Add(s.lapse()))
		cancel()
		switch {
		case err == nil:
			s.id.lastBeat.Store(now.UnixNano())
		case errors.Is(err, store.ErrInstanceHeld):
			s.log.Error("another process took this instance's id while its heartbeat had lapsed: this one sends nothing more; restart it with its own --instance-id", "instance", s.id.id, "err", err)
		default:
			s.log.Warn("instance heartbeat not written; sends stop if it lapses", "instance", s.id.id, "err", err)
		}
	}
}

// holdsID reports whether the instance is sure to hold its id: its last
// heartbeat has not lapsed. A process that lost its id (a pause longer
// than the lapse, the store out of reach) must not send under it.
func (s *Server) holdsID() bool {
	return time.Since(time.Unix(0, s.id.lastBeat.Load())) < s.lapse()
}

// leaveID gives the id up at shutdown, so that a restart takes it at once.
func (s *Server) leaveID() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.store.Leave(ctx, s.id.id, s.id.nonce); err != nil {
		s.log.Warn("giving the instance id up", "instance", s.id.id, "err", err)
	}
}
