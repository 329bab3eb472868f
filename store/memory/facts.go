package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// facts are the analytics' facts, summed per flow, bot version, number
// and hour, and, per contact, the latest version of its record whose
// facts are counted. A contact's versions are drained in order (one
// process works on a contact at a time, and a record's earlier tallies are
// drained before it is written again), so that a version at or below the
// mark was counted, and a drain again after a crash or a retry counts
// nothing: on disk, the marks and the sums are overwritten in place
// rather than a key kept per version.
type facts struct {
	marks map[string]int64
	hours map[factBucket]*conversation.FlowCounts
}

type factBucket struct {
	flow, botVersion, number string
	hour                     time.Time
}

// Keys of the facts bucket: a contact's mark, an hour's sums.
const (
	factMarkPrefix = "m\x00"
	factHourPrefix = "h\x00"
)

func (b factBucket) key() string {
	return factHourPrefix + strings.Join([]string{b.flow, b.botVersion, b.number, strconv.FormatInt(b.hour.Unix(), 10)}, "\x00")
}

func parseFactBucket(key string) (factBucket, error) {
	parts := strings.Split(strings.TrimPrefix(key, factHourPrefix), "\x00")
	if len(parts) != 4 {
		return factBucket{}, fmt.Errorf("facts: bad hour key %q", key)
	}
	sec, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return factBucket{}, fmt.Errorf("facts: bad hour key %q", key)
	}
	return factBucket{parts[0], parts[1], parts[2], time.Unix(sec, 0).UTC()}, nil
}

func (f *facts) init() {
	if f.marks == nil {
		f.marks = map[string]int64{}
		f.hours = map[factBucket]*conversation.FlowCounts{}
	}
}

// drainFacts adds a contact's tallies' facts (under s.mu), each version's
// once.
func (s *Store) drainFacts(contact string, tallies []conversation.TallyOut) {
	s.facts.init()
	for _, t := range tallies {
		if len(t.Flows) == 0 || t.Version <= s.facts.marks[contact] {
			continue
		}
		s.facts.marks[contact] = t.Version
		s.mark(BucketFacts, factMarkPrefix+contact)
		hour := t.At.UTC().Truncate(time.Hour)
		for _, ff := range t.Flows {
			b := factBucket{ff.Flow, ff.BotVersion, ff.Number, hour}
			c := s.facts.hours[b]
			if c == nil {
				c = &conversation.FlowCounts{}
				s.facts.hours[b] = c
			}
			c.Add(ff.FlowCounts)
			s.mark(BucketFacts, b.key())
		}
	}
}

// factValue is a facts entry as kept on disk; nil when there is none.
func (s *Store) factValue(key string) (any, error) {
	if contact, ok := strings.CutPrefix(key, factMarkPrefix); ok {
		if v, ok := s.facts.marks[contact]; ok {
			return v, nil
		}
		return nil, nil
	}
	b, err := parseFactBucket(key)
	if err != nil {
		return nil, err
	}
	if c := s.facts.hours[b]; c != nil {
		return c, nil
	}
	return nil, nil
}

// restoreFact takes a facts entry back from disk.
func (s *Store) restoreFact(key string, raw []byte) error {
	s.facts.init()
	if contact, ok := strings.CutPrefix(key, factMarkPrefix); ok {
		var v int64
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		s.facts.marks[contact] = v
		return nil
	}
	b, err := parseFactBucket(key)
	if err != nil {
		return err
	}
	var c conversation.FlowCounts
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	s.facts.hours[b] = &c
	return nil
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
