package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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

// Lease is the instance id this process holds, and the heartbeat that
// proves it: Take at start, Start the heartbeat, Holds before each send,
// Stop at the end (it gives the id up).
type Lease struct {
	store     store.Instances
	id        string
	nonce     string // this process, among those that use the id
	heartbeat time.Duration
	log       *slog.Logger
	// lastBeat is when the latest heartbeat was written (unix nanos): the
	// instance sends only while it is sure to hold its id.
	lastBeat atomic.Int64
	part     *Part
}

// NewLease is the lease of id, renewed every heartbeat.
func NewLease(st store.Instances, id string, heartbeat time.Duration, log *slog.Logger) *Lease {
	var b [8]byte
	rand.Read(b[:])
	return &Lease{store: st, id: id, nonce: hex.EncodeToString(b[:]), heartbeat: heartbeat, log: log, part: NewPart()}
}

// lapse is how long a heartbeat holds the id.
func (l *Lease) lapse() time.Duration { return 3 * l.heartbeat }

// Take takes the instance id at start-up: at once when it is free, else
// once the holder's heartbeat has lapsed (a process that died); an id
// whose heartbeat is renewed meanwhile belongs to a live instance, and
// is refused.
func (l *Lease) Take(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		now := time.Now()
		err := l.store.Beat(ctx, l.id, l.nonce, now, now.Add(l.lapse()))
		var held *store.HeldError
		switch {
		case err == nil:
			l.lastBeat.Store(now.UnixNano())
			return nil
		case !errors.As(err, &held):
			return fmt.Errorf("taking instance id %q: %w", l.id, err)
		case attempt > 0:
			return fmt.Errorf("instance id %q is in use by a live instance (its heartbeat is fresh): give each instance its own --instance-id (the default is the host name and the listen address)", l.id)
		}
		wait := min(time.Until(held.Until), l.lapse()) + l.heartbeat/4
		l.log.Info("instance id held by another process, maybe one that died: waiting for its heartbeat to lapse", "instance", l.id, "wait", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Start renews the id every heartbeat until Stop.
func (l *Lease) Start() { l.part.Start(l.beat) }

func (l *Lease) beat(stopping <-chan struct{}) {
	t := time.NewTicker(l.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stopping:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.lapse())
		now := time.Now()
		err := l.store.Beat(ctx, l.id, l.nonce, now, now.Add(l.lapse()))
		cancel()
		switch {
		case err == nil:
			l.lastBeat.Store(now.UnixNano())
		case errors.Is(err, store.ErrInstanceHeld):
			l.log.Error("another process took this instance's id while its heartbeat had lapsed: this one sends nothing more; restart it with its own --instance-id", "instance", l.id, "err", err)
		default:
			l.log.Warn("instance heartbeat not written; sends stop if it lapses", "instance", l.id, "err", err)
		}
	}
}

// Holds reports whether the instance is sure to hold its id: its last
// heartbeat has not lapsed. A process that lost its id (a pause longer
// than the lapse, the store out of reach) must not send under it.
func (l *Lease) Holds() bool {
	return time.Since(time.Unix(0, l.lastBeat.Load())) < l.lapse()
}

// Stop ends the heartbeat and gives the id up, so that a restart takes it
// at once.
func (l *Lease) Stop() {
	l.part.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.store.Leave(ctx, l.id, l.nonce); err != nil {
		l.log.Warn("giving the instance id up", "instance", l.id, "err", err)
	}
}
