package server

import (
	"context"
	"time"
)

// later has the contact's work done again after d (a retry).
func (s *Server) later(d time.Duration, contact string) { s.worker.Later(d, contact) }

// Quiet reports whether the server has nothing in hand: no contact being
// worked on, settling or waiting for a worker, no retry waiting, and no
// update queued in the store. Tests wait for it before checking that
// nothing more happened than they expected; an operator can read it at
// /healthz before a shutdown.
func (s *Server) Quiet() bool {
	if s.worker.Pending() > 0 || s.disp.Busy() > 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := s.store.Depth(ctx)
	return err == nil && n == 0 && s.disp.Busy() == 0 && s.worker.Pending() == 0
}
