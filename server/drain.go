package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// What a commit causes (events out, campaign tallies) is written in the
// record with it, then drained: the events to the store's queue, the
// tallies to the campaigns' counts, each under an id or key the store
// takes once. The record keeps them until its next write, so that a crash
// between the commit and the drain leaves them to be drained again
// (harmlessly) by whoever works on the contact next: the updates that
// caused them stay queued until they are drained, which brings the
// contact's work back after a crash; a write no queued update caused (a
// timer, a retry) carries a drain_due instead, when a sweep comes for it
// (conversation.DrainAfter).

// drained remembers, per contact, the latest version of the record this
// process wrote and drained: the contact's next write leaves what that
// version (or an earlier one) holds out without draining it again.
type drained struct {
	mu sync.Mutex
	m  map[string]int64
}

// drainedLimit bounds what drained remembers; forgetting costs a drain
// again, never a count.
const drainedLimit = 100_000

func (d *drained) set(contact string, version int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= drainedLimit {
		d.m = map[string]int64{}
	}
	d.m[contact] = version
}

// since reports whether a version of the contact's record at least as
// recent as version was drained here: a later write carries the earlier
// one's events and tallies, and drains them with its own.
func (d *drained) since(contact string, version int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[contact]
	return ok && v >= version
}

// save writes st (compare-and-swap). guarded says that the queued
// updates that caused what st holds to drain (events, tallies) stay
// queued until it is drained; else st carries a drain_due, when a sweep
// comes for it should the writer not drain it (a crash).
func (s *Server) save(ctx context.Context, st *conversation.Record, guarded bool) error {
	st.DrainDue = time.Time{}
	if !guarded && st.ToDrain() {
		st.DrainDue = s.cfg.Now().Add(conversation.DrainAfter)
	}
	return s.store.Save(ctx, st)
}

// drainWritten drains what a written record caused; what fails stays in
// the record and is tried again soon (and by a sweep, after a crash).
func (s *Server) drainWritten(ctx context.Context, st *conversation.Record) {
	if err := s.drain(ctx, st); err != nil {
		s.drainFailed(ctx, st.Contact.ID, err)
	}
}

// drainFailed logs a drain that failed, and has the contact's work done
// again shortly.
func (s *Server) drainFailed(ctx context.Context, contact string, err error) {
	s.log.Error("draining what a write caused; tried again shortly", "contact", contact, "err", err)
	if ctx.Err() == nil {
		s.later(s.cfg.RetryLater, contact)
	}
}

// drain queues the events and drains the tallies of a written record.
func (s *Server) drain(ctx context.Context, st *conversation.Record) error {
	contact := st.Contact.ID
	if !st.ToDrain() {
		return nil
	}
	if err := s.queueEvents(ctx, contact, st.EventsOut); err != nil {
		return fmt.Errorf("queueing the events of contact %s: %w", contact, err)
	}
	if len(st.Tallies) > 0 {
		if err := s.store.DrainTallies(ctx, contact, store.FreshFacts(st.Tallies, s.cfg.Now())); err != nil {
			return fmt.Errorf("counting the campaigns of contact %s: %w", contact, err)
		}
		for _, t := range st.Tallies {
			for _, c := range t.Campaigns {
				s.countsC.forget(c.Campaign)
				s.metrics.campaignSkips.WithLabelValues("opted_out").Add(float64(c.OptedOut))
				s.metrics.campaignSkips.WithLabelValues("busy").Add(float64(c.Busy))
				s.metrics.campaignSkips.WithLabelValues("limit").Add(float64(c.Limit))
			}
		}
		s.changed()
	}
	s.drainedV.set(contact, st.Version)
	return nil
}

// carry prepares a loaded record for its next write: the events and
// tallies of a version this process drained leave it; those of another
// writer (or of this one before a crash) are drained first. It reports
// whether the record changed, and must be written.
func (s *Server) carry(ctx context.Context, st *conversation.Record) (bool, error) {
	if !st.ToDrain() {
		return false, nil
	}
	if !s.drainedV.since(st.Contact.ID, st.Version) {
		if err := s.drain(ctx, st); err != nil {
			return false, err
		}
	}
	st.EventsOut, st.Tallies, st.DrainDue = nil, nil, time.Time{}
	return true, nil
}

// countsFresh is how long a campaign's counts read from the store serve
// every reader (the API, the runner): a sum over the campaign's tallies
// is read at most this often per instance, however many dashboards poll
// (and again at once after this instance drained a tally of it). It is
// wall time: another instance's counts show within it.
const countsFresh = time.Second

// countsCache keeps each campaign's counts as last read.
type countsCache struct {
	mu sync.Mutex
	m  map[string]cachedCounts
	// gen counts the drains here: a read that began before one does not
	// keep what it read.
	gen int64
}

type cachedCounts struct {
	n  conversation.CampaignCounts
	at time.Time
}

// forget drops a campaign's counts: this instance just added to them.
func (c *countsCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	c.gen++
}

// campaignCounts is the campaign's counts, read from the store at most
// once per countsFresh (and at once when fresh is set: the runner
// deciding that a campaign is done reads the store).
func (s *Server) campaignCounts(ctx context.Context, id string, fresh bool) (conversation.CampaignCounts, error) {
	now := time.Now()
	s.countsC.mu.Lock()
	c, ok := s.countsC.m[id]
	gen := s.countsC.gen
	s.countsC.mu.Unlock()
	if ok && !fresh && now.Sub(c.at) < countsFresh {
		return c.n, nil
	}
	n, err := s.store.Counts(ctx, id)
	if err != nil {
		return n, err
	}
	s.countsC.mu.Lock()
	defer s.countsC.mu.Unlock()
	if s.countsC.gen != gen {
		return n, nil // a drain came meanwhile: what was read may miss it
	}
	if s.countsC.m == nil || len(s.countsC.m) > 1000 {
		s.countsC.m = map[string]cachedCounts{}
	}
	s.countsC.m[id] = cachedCounts{n: n, at: now}
	return n, nil
}
