package server

import (
	"context"
	"sync"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
)

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
