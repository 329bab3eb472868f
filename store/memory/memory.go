// Package memory is the in-memory store: for dry runs, tests and the
// embedded default of `flowbot serve`. State is lost when the process ends.
package memory

import (
	"context"
	"github.com/flowbot/flowbot/engine/conversation"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

// Store keeps contacts in a map. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	contacts map[string]*conversation.Record
	inbox    inbox
	bots     map[string]map[string][]byte
	beats    map[string]beat
	answers  map[string]*idem
	tmpls    map[string]store.TemplateState
	account  map[string]store.AccountState
	camps    campaigns
	events   events
	facts    facts

	// persist makes changes durable (nil: memory only); dirty lists the
	// entries the running method changed.
	persist Persister
	dirty   []dirtyKey
	// direct are changes encoded by the method itself (what is kept on
	// disk only).
	direct []Change
}

// idem is an Idempotency-Key's reservation and, once given, its answer.
type idem struct {
	fingerprint string
	at          time.Time
	answer      *store.Answer
}

// beat is an instance id's holder and until when.
type beat struct {
	nonce string
	until time.Time
}

// New returns an empty store.
func New() *Store {
	return &Store{
		contacts: map[string]*conversation.Record{},
		inbox:    inbox{keys: map[string]time.Time{}, pending: map[string][]conversation.Item{}},
		bots:     map[string]map[string][]byte{},
		beats:    map[string]beat{},
		answers:  map[string]*idem{},
		tmpls:    map[string]store.TemplateState{},
		account:  map[string]store.AccountState{},
	}
}

// UpdateTemplate implements store.Templates.
func (s *Store) UpdateTemplate(_ context.Context, u store.TemplateState) (applied bool, err error) {
	s.mu.Lock()
	defer s.end(&err)
	key := u.Name + "/" + u.Language
	t := s.tmpls[key]
	if !t.Merge(u) {
		return false, nil
	}
	s.tmpls[key] = t
	s.mark(BucketTemplates, key)
	return true, nil
}

// TemplateStates implements store.Templates.
func (s *Store) TemplateStates(context.Context) ([]store.TemplateState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.TemplateState, 0, len(s.tmpls))
	for _, k := range flows.SortedKeys(s.tmpls) {
		out = append(out, s.tmpls[k])
	}
	return out, nil
}

// UpdateAccount implements store.Account.
func (s *Store) UpdateAccount(_ context.Context, a store.AccountState) (applied bool, err error) {
	s.mu.Lock()
	defer s.end(&err)
	if was, ok := s.account[a.Key]; ok && !a.UpdatedAt.After(was.UpdatedAt) {
		return false, nil
	}
	a.Restrictions = slices.Clone(a.Restrictions)
	s.account[a.Key] = a
	s.mark(BucketAccount, a.Key)
	return true, nil
}

// AccountStates implements store.Account.
func (s *Store) AccountStates(context.Context) ([]store.AccountState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.AccountState, 0, len(s.account))
	for _, k := range flows.SortedKeys(s.account) {
		a := s.account[k]
		a.Restrictions = slices.Clone(a.Restrictions)
		out = append(out, a)
	}
	return out, nil
}

// Volatile reports whether the store keeps nothing across a restart.
func (s *Store) Volatile() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persist == nil
}

// Load implements store.Contacts.
func (s *Store) Load(_ context.Context, id string) (*conversation.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.contacts[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return st.Clone(), nil
}

// Save implements store.Contacts.
func (s *Store) Save(_ context.Context, st *conversation.Record) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	cur, ok := s.contacts[st.Contact.ID]
	switch {
	case !ok && st.Version != 0, ok && cur.Version != st.Version:
		return store.ErrConflict
	}
	st.Version++
	s.contacts[st.Contact.ID] = st // Save takes ownership (store.Contacts)
	s.mark(BucketContacts, st.Contact.ID)
	return nil
}

// Due implements store.Contacts.
func (s *Store) Due(_ context.Context, t time.Time, limit int) ([]store.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []store.Due
	for id, st := range s.contacts {
		if next, ok := st.NextWork(); ok && !next.After(t) {
			all = append(all, store.Due{Contact: id, At: next})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].At.Equal(all[j].At) {
			return all[i].At.Before(all[j].At)
		}
		return all[i].Contact < all[j].Contact
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// Claimed implements store.Contacts.
func (s *Store) Claimed(_ context.Context, instance string, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, st := range s.contacts {
		if len(st.Outbox) > 0 && st.Outbox[0].ClaimedBy == instance {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

var _ store.Contacts = (*Store)(nil)

// Beat implements store.Instances.
func (s *Store) Beat(_ context.Context, id, nonce string, now, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.beats[id]; ok && b.nonce != nonce && b.until.After(now) {
		return &store.HeldError{ID: id, Until: b.until}
	}
	s.beats[id] = beat{nonce: nonce, until: until}
	return nil
}

// Leave implements store.Instances.
func (s *Store) Leave(_ context.Context, id, nonce string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.beats[id]; ok && b.nonce == nonce {
		delete(s.beats, id)
	}
	return nil
}

// SaveBot implements store.Bots.
func (s *Store) SaveBot(_ context.Context, version string, files map[string][]byte) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	s.bots[version] = files
	s.mark(BucketBots, version)
	return nil
}

// LoadBot implements store.Bots.
func (s *Store) LoadBot(_ context.Context, version string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.bots[version]
	if !ok {
		return nil, store.ErrNotFound
	}
	return f, nil
}

var _ store.Bots = (*Store)(nil)

// Reserve implements store.Idempotency.
func (s *Store) Reserve(_ context.Context, key, fingerprint string, now time.Time) (_ *store.Answer, err error) {
	s.mu.Lock()
	defer s.end(&err)
	if len(s.answers) > 1024 {
		for k, r := range s.answers {
			if now.Sub(r.at) > store.IdempotencyWindow {
				delete(s.answers, k)
				s.mark(BucketAnswers, k)
			}
		}
	}
	r, ok := s.answers[key]
	switch {
	case !ok, now.Sub(r.at) > store.IdempotencyWindow, r.answer == nil && now.Sub(r.at) > store.AbandonedAfter:
		s.answers[key] = &idem{fingerprint: fingerprint, at: now}
		s.mark(BucketAnswers, key)
		return nil, nil
	case r.answer == nil:
		return nil, store.ErrInProgress
	}
	a := *r.answer
	return &a, nil
}

// Answer implements store.Idempotency.
func (s *Store) Answer(_ context.Context, key string, reservedAt time.Time, a store.Answer) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	r, ok := s.answers[key]
	if !ok || !r.at.Equal(reservedAt) || r.answer != nil {
		return store.ErrConflict
	}
	a.Body = append([]byte(nil), a.Body...)
	a.Fingerprint, a.At = r.fingerprint, r.at
	r.answer = &a
	s.mark(BucketAnswers, key)
	return nil
}

// Forget implements store.Idempotency.
func (s *Store) Forget(_ context.Context, key string, reservedAt time.Time) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	r, ok := s.answers[key]
	if !ok || !r.at.Equal(reservedAt) || r.answer != nil {
		return store.ErrConflict
	}
	delete(s.answers, key)
	s.mark(BucketAnswers, key)
	return nil
}
