package memory

import (
	"context"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// facts are the analytics' facts: each version's as drained (by
// store.FactKey, to skip a key drained again), and their sums per flow,
// bot version, number and hour.
type facts struct {
	seen  map[string]factEntry
	hours map[factBucket]*conversation.FlowCounts
}

// factEntry is a version's facts as drained (and kept on disk).
type factEntry struct {
	Hour  time.Time                `json:"hour"`
	Flows []conversation.FlowFacts `json:"flows"`
}

type factBucket struct {
	flow, botVersion, number string
	hour                     time.Time
}

// add sums a version's facts, once per key.
func (f *facts) add(key string, e factEntry) bool {
	if f.seen == nil {
		f.seen = map[string]factEntry{}
		f.hours = map[factBucket]*conversation.FlowCounts{}
	}
	if _, dup := f.seen[key]; dup {
		return false
	}
	f.seen[key] = e
	for _, ff := range e.Flows {
		b := factBucket{ff.Flow, ff.BotVersion, ff.Number, e.Hour}
		c := f.hours[b]
		if c == nil {
			c = &conversation.FlowCounts{}
			f.hours[b] = c
		}
		c.Add(ff.FlowCounts)
	}
	return true
}

// drainFacts adds a contact's tallies' facts (under s.mu).
func (s *Store) drainFacts(contact string, tallies []conversation.TallyOut) {
	for _, t := range tallies {
		if len(t.Flows) == 0 {
			continue
		}
		key := store.FactKey(contact, t.Version)
		if s.facts.add(key, factEntry{Hour: t.At.UTC().Truncate(time.Hour), Flows: t.Flows}) {
			s.mark(BucketFacts, key)
		}
	}
}

// FlowFacts implements store.Facts.
func (s *Store) FlowFacts(_ context.Context, q store.FactQuery) (conversation.FlowCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum conversation.FlowCounts
	first := q.FirstHour()
	for b, c := range s.facts.hours {
		if b.flow == q.Flow && !b.hour.Before(first) && b.hour.Before(q.To) && q.Matches(b.number, b.botVersion) {
			sum.Add(*c)
		}
	}
	return sum, nil
}
