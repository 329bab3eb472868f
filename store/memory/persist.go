package memory

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/store"
)

// A Store is in memory only, or durable: given a Persister (store/disk),
// every change a method makes is handed to it, in the order the changes
// were made, before the method returns, and the method returns once it is
// durable (an error if it could not be made so). Reads are served from
// memory. What is kept, by bucket: contacts' records, their queued
// updates and the keys seen (deduplication), bot versions, idempotency
// answers, templates' and the account's states, campaigns (their
// audience, batches and drained tallies), and events out. Instances'
// heartbeats are not: a durable store is one process's, which a lock on
// its directory says.

// Persister makes changes durable.
type Persister interface {
	// Commit hands over changes, to be written after those handed over
	// before; wait returns once they are durable.
	Commit(changes []Change) (wait func() error)
}

// Reader is a Persister that reads entries back: the store then keeps
// what is large and rarely read (campaigns' audiences) on disk only.
type Reader interface {
	// Get is an entry as written; nil when there is none.
	Get(bucket, key string) ([]byte, error)
}

// reader is the persister's Reader, if it is one.
func (s *Store) reader() Reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.persist.(Reader)
	return r
}

// Change is one entry of a bucket, as it is now: Value nil when it was
// deleted.
type Change struct {
	Bucket, Key string
	Value       []byte
}

// The buckets.
const (
	BucketContacts  = "contacts"
	BucketInbox     = "inbox"      // a contact's queued updates
	BucketInboxKeys = "inbox_keys" // every update key seen, with when
	BucketMeta      = "meta"
	BucketBots      = "bots"
	BucketAnswers   = "answers"
	BucketTemplates = "templates"
	BucketAccount   = "account"
	BucketCampaigns = "campaigns"
	BucketAudience  = "audience" // campaign \x00 page
	BucketBatches   = "batches"  // campaign \x00 n
	BucketTallies   = "tallies"  // store.TallyKey
	BucketFacts     = "facts"    // a contact's mark, an hour's sums (facts.go)
	BucketEvents    = "events"
	BucketEventDone = "events_done"
)

// Buckets lists every bucket.
var Buckets = []string{BucketContacts, BucketInbox, BucketInboxKeys, BucketMeta, BucketBots, BucketAnswers, BucketTemplates,
	BucketAccount, BucketCampaigns, BucketAudience, BucketBatches, BucketTallies, BucketFacts, BucketEvents, BucketEventDone}

type dirtyKey struct{ bucket, key string }

// SetPersister makes the store durable from now on (after Restore).
func (s *Store) SetPersister(p Persister) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.persist = p
}

// mark records that an entry changed, under s.mu.
func (s *Store) mark(bucket, key string) {
	if s.persist != nil {
		s.dirty = append(s.dirty, dirtyKey{bucket, key})
	}
}

// end ends a method that may have changed entries: the changes are
// encoded and handed over under the lock (in the order made), and the
// method waits for them to be durable after it, setting *err when they
// could not be made so.
func (s *Store) end(err *error) { s.finish(err, true) }

// endLater ends a method whose changes need not be durable when it
// returns: they are handed over in order, so that they are durable before
// any later method's that waits (a drain's counts, before the write that
// lets their record forget them, or the queue's ack of the updates that
// caused them). A write that fails fails every later one.
func (s *Store) endLater() { s.finish(nil, false) }

func (s *Store) finish(err *error, waitDurable bool) {
	var wait func() error
	if len(s.dirty) > 0 || len(s.direct) > 0 {
		changes := make([]Change, 0, len(s.dirty)+len(s.direct))
		changes = append(changes, s.direct...)
		s.direct = s.direct[:0]
		seen := map[dirtyKey]bool{}
		for _, d := range s.dirty {
			if seen[d] {
				continue
			}
			seen[d] = true
			v, encErr := s.value(d.bucket, d.key)
			if encErr != nil {
				panic(fmt.Sprintf("memory: encoding %s/%s: %v", d.bucket, d.key, encErr)) // values the store made itself
			}
			changes = append(changes, Change{Bucket: d.bucket, Key: d.key, Value: v})
		}
		s.dirty = s.dirty[:0]
		wait = s.persist.Commit(changes)
	}
	s.mu.Unlock()
	if wait != nil && waitDurable {
		if werr := wait(); werr != nil && *err == nil {
			*err = werr
		}
	}
}

func splitKey(key string) (string, int, error) {
	id, n, ok := strings.Cut(key, "\x00")
	if !ok {
		return "", 0, fmt.Errorf("key %q has no part number", key)
	}
	i, err := strconv.Atoi(n)
	return id, i, err
}

func partKey(id string, n int) string { return id + "\x00" + strconv.Itoa(n) }

// answerEntry is an idempotency reservation as kept.
type answerEntry struct {
	Fingerprint string        `json:"fingerprint"`
	At          time.Time     `json:"at"`
	Answer      *store.Answer `json:"answer,omitempty"`
}

// tallyEntry is a drained tally as kept.
type tallyEntry struct {
	Campaign string                      `json:"campaign"`
	Counts   conversation.CampaignCounts `json:"counts"`
}

// value is an entry as it is now, encoded; nil when there is none.
func (s *Store) value(bucket, key string) ([]byte, error) {
	var v any
	switch bucket {
	case BucketContacts:
		if r, ok := s.contacts[key]; ok {
			v = r
		}
	case BucketInbox:
		if l, ok := s.inbox.pending[key]; ok {
			v = l
		}
	case BucketInboxKeys:
		if at, ok := s.inbox.keys[key]; ok {
			v = at
		}
	case BucketMeta:
		if key == "inbox_seq" {
			v = s.inbox.seq
		}
	case BucketBots:
		if f, ok := s.bots[key]; ok {
			v = f
		}
	case BucketAnswers:
		if r, ok := s.answers[key]; ok {
			v = answerEntry{Fingerprint: r.fingerprint, At: r.at, Answer: r.answer}
		}
	case BucketTemplates:
		if t, ok := s.tmpls[key]; ok {
			v = t
		}
	case BucketAccount:
		if a, ok := s.account[key]; ok {
			v = a
		}
	case BucketCampaigns:
		if c, ok := s.camps.byID[key]; ok {
			v = c
		}
	case BucketAudience:
		id, n, err := splitKey(key)
		if err != nil {
			return nil, err
		}
		if p, ok := s.camps.audience[id][n]; ok {
			v = p
		}
	case BucketBatches:
		id, n, err := splitKey(key)
		if err != nil {
			return nil, err
		}
		if b, ok := s.camps.batches[id][n]; ok {
			v = b
		}
	case BucketTallies:
		for id, l := range s.camps.counts {
			if c, ok := l.seen[key]; ok {
				v = tallyEntry{Campaign: id, Counts: c}
				break
			}
		}
	case BucketFacts:
		fv, err := s.factValue(key)
		if err != nil {
			return nil, err
		}
		v = fv
	case BucketEvents:
		if e, ok := s.events.pending[key]; ok {
			v = e
		}
	case BucketEventDone:
		if at, ok := s.events.done[key]; ok {
			v = at
		}
	default:
		return nil, fmt.Errorf("unknown bucket %q", bucket)
	}
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// Restore puts back an entry a Persister kept, before SetPersister.
func (s *Store) Restore(bucket, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dec := func(v any) error {
		if err := json.Unmarshal(value, v); err != nil {
			return fmt.Errorf("restoring %s/%q: %w", bucket, key, err)
		}
		return nil
	}
	switch bucket {
	case BucketContacts:
		r := new(conversation.Record)
		if err := dec(r); err != nil {
			return err
		}
		s.contacts[key] = r
	case BucketInbox:
		var l []conversation.Item
		if err := dec(&l); err != nil {
			return err
		}
		s.inbox.pending[key] = l
	case BucketInboxKeys:
		var at time.Time
		if err := dec(&at); err != nil {
			return err
		}
		s.inbox.keys[key] = at
	case BucketMeta:
		if key == "inbox_seq" {
			return dec(&s.inbox.seq)
		}
	case BucketBots:
		var f map[string][]byte
		if err := dec(&f); err != nil {
			return err
		}
		s.bots[key] = f
	case BucketAnswers:
		var a answerEntry
		if err := dec(&a); err != nil {
			return err
		}
		s.answers[key] = &idem{fingerprint: a.Fingerprint, at: a.At, answer: a.Answer}
	case BucketTemplates:
		var t store.TemplateState
		if err := dec(&t); err != nil {
			return err
		}
		s.tmpls[key] = t
	case BucketAccount:
		var a store.AccountState
		if err := dec(&a); err != nil {
			return err
		}
		s.account[key] = a
	case BucketCampaigns:
		c := new(store.Campaign)
		if err := dec(c); err != nil {
			return err
		}
		s.camps.init()
		s.camps.byID[key] = c
	case BucketAudience:
		id, n, err := splitKey(key)
		if err != nil {
			return err
		}
		var p []store.AudienceContact
		if err := dec(&p); err != nil {
			return err
		}
		s.camps.init()
		if s.camps.audience[id] == nil {
			s.camps.audience[id] = map[int][]store.AudienceContact{}
		}
		s.camps.audience[id][n] = p
	case BucketBatches:
		id, n, err := splitKey(key)
		if err != nil {
			return err
		}
		var b store.CampaignBatch
		if err := dec(&b); err != nil {
			return err
		}
		s.camps.init()
		if s.camps.batches[id] == nil {
			s.camps.batches[id] = map[int]store.CampaignBatch{}
		}
		s.camps.batches[id][n] = b
	case BucketTallies:
		var t tallyEntry
		if err := dec(&t); err != nil {
			return err
		}
		s.camps.init()
		l := s.camps.counts[t.Campaign]
		if l == nil {
			l = &ledger{seen: map[string]conversation.CampaignCounts{}}
			s.camps.counts[t.Campaign] = l
		}
		if _, dup := l.seen[key]; !dup {
			l.seen[key] = t.Counts
			l.sum.Add(t.Counts)
		}
	case BucketFacts:
		if err := s.restoreFact(key, value); err != nil {
			return fmt.Errorf("restoring %s/%q: %w", bucket, key, err)
		}
	case BucketEvents:
		e := new(store.OutEvent)
		if err := dec(e); err != nil {
			return err
		}
		s.events.init()
		s.events.pending[key] = e
	case BucketEventDone:
		var at time.Time
		if err := dec(&at); err != nil {
			return err
		}
		s.events.init()
		s.events.done[key] = at
	default:
		return fmt.Errorf("restoring: unknown bucket %q", bucket)
	}
	return nil
}
