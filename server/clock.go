package server

import (
	"context"
	"sync/atomic"
	"time"
)

// Clock is the server's time: what time it is, and timers. Everything
// the server waits for goes through it (a burst's settle time, the backoff
// between tries of a send, a later retry, the scheduler's ticks), so that
// tests can drive time. The instance heartbeat alone keeps to the wall
// clock: it proves liveness to other processes.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed; stop
	// cancels that, reporting whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// wallClock is the real time; now may be replaced (Config.Now).
type wallClock struct{ now func() time.Time }

func (c wallClock) Now() time.Time { return c.now() }

func (c wallClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// after returns a channel closed once d has passed on the clock, and a
// function that releases the timer early.
func after(c Clock, d time.Duration) (<-chan struct{}, func() bool) {
	ch := make(chan struct{})
	stop := c.AfterFunc(d, func() { close(ch) })
	return ch, stop
}

// later kicks the contact's work after d (a retry), counted so that the
// server knows it has work pending (Quiet).
func (s *Server) later(d time.Duration, contact string) {
	s.pending.Add(1)
	s.clock.AfterFunc(d, func() {
		s.disp.kick(contact)
		s.pending.Add(-1)
	})
}

// Quiet reports whether the server has nothing in hand: no contact being
// worked on, settling or waiting for a worker, no retry waiting, and no
// update queued in the store. Tests wait for it before checking that
// nothing more happened than they expected; an operator can read it at
// /healthz before a shutdown.
func (s *Server) Quiet() bool {
	if s.pending.Load() > 0 || s.disp.busy() > 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := s.store.Depth(ctx)
	return err == nil && n == 0 && s.disp.busy() == 0 && s.pending.Load() == 0
}

// pendingCount is a counter of scheduled retries.
type pendingCount = atomic.Int64
