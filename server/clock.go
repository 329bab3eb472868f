package server

import (
	"context"
	"sync/atomic"
	"time"
)

// later kicks the contact's work after d (a retry), counted so that the
// server knows it has work pending (Quiet).
func (s *Server) later(d time.Duration, contact string) {
	s.pending.Add(1)
	s.clock.AfterFunc(d, func() {
		s.disp.Kick(contact)
		s.pending.Add(-1)
	})
}

// Quiet reports whether the server has nothing in hand: no contact being
// worked on, settling or waiting for a worker, no retry waiting, and no
// update queued in the store. Tests wait for it before checking that
// nothing more happened than they expected; an operator can read it at
// /healthz before a shutdown.
func (s *Server) Quiet() bool {
	if s.pending.Load() > 0 || s.disp.Busy() > 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := s.store.Depth(ctx)
	return err == nil && n == 0 && s.disp.Busy() == 0 && s.pending.Load() == 0
}

// pendingCount is a counter of scheduled retries.
type pendingCount = atomic.Int64
