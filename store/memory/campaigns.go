package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"slices"
	"sort"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
)

// campaigns is the memory store's part for campaigns.
type campaigns struct {
	byID     map[string]*store.Campaign
	audience map[string]map[int][]store.AudienceContact
	batches  map[string]map[int]store.CampaignBatch
	counts   map[string]*ledger
}

// ledger is a campaign's counts and the keys of the tallies in them.
type ledger struct {
	sum  conversation.CampaignCounts
	seen map[string]conversation.CampaignCounts // what each key added
}

func (c *campaigns) init() {
	if c.byID == nil {
		c.byID = map[string]*store.Campaign{}
		c.audience = map[string]map[int][]store.AudienceContact{}
		c.batches = map[string]map[int]store.CampaignBatch{}
		c.counts = map[string]*ledger{}
	}
}

// CreateCampaign implements store.Campaigns.
func (s *Store) CreateCampaign(_ context.Context, c store.Campaign) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	s.camps.init()
	if _, ok := s.camps.byID[c.ID]; ok {
		return store.ErrConflict
	}
	s.camps.byID[c.ID] = &c
	s.mark(BucketCampaigns, c.ID)
	return nil
}

// PutAudience implements store.Campaigns.
func (s *Store) PutAudience(_ context.Context, id string, page int, contacts []store.AudienceContact) (err error) {
	if s.reader() != nil {
		// A durable store keeps audiences on disk only: a million
		// contacts are not held in memory (Audience reads a page back).
		b, err := json.Marshal(contacts)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.direct = append(s.direct, Change{Bucket: BucketAudience, Key: partKey(id, page), Value: b})
		defer s.end(&err)
		return nil
	}
	s.mu.Lock()
	defer s.end(&err)
	s.camps.init()
	pages := s.camps.audience[id]
	if pages == nil {
		pages = map[int][]store.AudienceContact{}
		s.camps.audience[id] = pages
	}
	pages[page] = cloneAudience(contacts)
	s.mark(BucketAudience, partKey(id, page))
	return nil
}

func cloneAudience(in []store.AudienceContact) []store.AudienceContact {
	out := make([]store.AudienceContact, len(in))
	for i, c := range in {
		out[i] = c
		out[i].Vars = engine.CloneVars(c.Vars)
	}
	return out
}

// Audience implements store.Campaigns.
func (s *Store) Audience(_ context.Context, id string, page int) ([]store.AudienceContact, error) {
	if r := s.reader(); r != nil {
		b, err := r.Get(BucketAudience, partKey(id, page))
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, store.ErrNotFound
		}
		var p []store.AudienceContact
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("reading campaign %s's audience page %d: %w", id, page, err)
		}
		return p, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.camps.audience[id][page]
	if !ok {
		return nil, store.ErrNotFound
	}
	return cloneAudience(p), nil
}

// Campaign implements store.Campaigns.
func (s *Store) Campaign(_ context.Context, id string) (*store.Campaign, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.camps.byID[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

// ListCampaigns implements store.Campaigns.
func (s *Store) ListCampaigns(context.Context) ([]store.Campaign, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.Campaign, 0, len(s.camps.byID))
	for _, c := range s.camps.byID {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// UpdateCampaign implements store.Campaigns.
func (s *Store) UpdateCampaign(_ context.Context, id string, from []store.CampaignState, u store.CampaignUpdate) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	c, ok := s.camps.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	if len(from) > 0 && !slices.Contains(from, c.State) {
		return &store.ErrWrongState{State: c.State}
	}
	s.mark(BucketCampaigns, id)
	if u.State != "" {
		c.State = u.State
	}
	if !u.HandedOut.IsZero() {
		c.HandedOut = u.HandedOut
	}
	if !u.FinishedAt.IsZero() {
		c.FinishedAt = u.FinishedAt
	}
	if u.Announced {
		c.Announced = true
	}
	return nil
}

// ClaimBatch implements store.Campaigns.
func (s *Store) ClaimBatch(_ context.Context, b store.CampaignBatch) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	s.camps.init()
	m := s.camps.batches[b.Campaign]
	if m == nil {
		m = map[int]store.CampaignBatch{}
		s.camps.batches[b.Campaign] = m
	}
	if _, ok := m[b.N]; ok {
		return store.ErrConflict
	}
	m[b.N] = b
	s.mark(BucketBatches, partKey(b.Campaign, b.N))
	return nil
}

// Batch implements store.Campaigns.
func (s *Store) Batch(_ context.Context, id string, n int) (*store.CampaignBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.camps.batches[id][n]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &b, nil
}

// LastBatch implements store.Campaigns.
func (s *Store) LastBatch(_ context.Context, id string) (*store.CampaignBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last *store.CampaignBatch
	for _, b := range s.camps.batches[id] {
		if last == nil || b.N > last.N {
			b := b
			last = &b
		}
	}
	if last == nil {
		return nil, store.ErrNotFound
	}
	return last, nil
}

// OpenBatches implements store.Campaigns.
func (s *Store) OpenBatches(_ context.Context, id string) ([]store.CampaignBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.CampaignBatch
	for _, b := range s.camps.batches[id] {
		if !b.Done {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N < out[j].N })
	return out, nil
}

// UpdateBatch implements store.Campaigns.
func (s *Store) UpdateBatch(_ context.Context, was, b store.CampaignBatch) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	old, ok := s.camps.batches[b.Campaign][b.N]
	if !ok {
		return store.ErrNotFound
	}
	if !old.Holds(was) {
		return store.ErrConflict
	}
	old.By, old.Until, old.Done = b.By, b.Until, b.Done
	s.camps.batches[b.Campaign][b.N] = old
	s.mark(BucketBatches, partKey(b.Campaign, b.N))
	return nil
}

// SetPace implements store.Campaigns.
func (s *Store) SetPace(_ context.Context, id string, was, to store.Pace) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	c, ok := s.camps.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	if !c.Pace().Same(was) {
		return store.ErrConflict
	}
	c.Factor, c.SlowedAt = to.Factor, to.SlowedAt
	s.mark(BucketCampaigns, id)
	return nil
}

// DrainTallies implements store.Campaigns.
// What it counts is durable before any later change that waits (the
// record's next write, the ack of the updates that caused it), so it does
// not wait itself: a crash before then leaves the tallies in the record,
// drained again on its next load.
func (s *Store) DrainTallies(_ context.Context, contact string, tallies []conversation.TallyOut) error {
	s.mu.Lock()
	defer s.endLater()
	s.camps.init()
	for _, t := range tallies {
		for _, c := range t.Campaigns {
			l := s.camps.counts[c.Campaign]
			if l == nil {
				l = &ledger{seen: map[string]conversation.CampaignCounts{}}
				s.camps.counts[c.Campaign] = l
			}
			key := store.TallyKey(c.Campaign, contact, t.Version)
			if _, dup := l.seen[key]; dup {
				continue
			}
			l.seen[key] = c.CampaignCounts
			l.sum.Add(c.CampaignCounts)
			s.mark(BucketTallies, key)
		}
	}
	s.drainFacts(contact, tallies)
	return nil
}

// Counts implements store.Campaigns.
func (s *Store) Counts(_ context.Context, id string) (conversation.CampaignCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.camps.counts[id]; l != nil {
		return l.sum, nil
	}
	return conversation.CampaignCounts{}, nil
}
