package memory

import (
	"context"
	"github.com/flowbot/flowbot/engine/conversation"
	"sort"
	"time"

	"github.com/flowbot/flowbot/store"
)

// dedupeWindow is how long a key is remembered: Meta redelivers a
// webhook for up to 7 days.
const dedupeWindow = 8 * 24 * time.Hour

type inbox struct {
	seq     int64
	keys    map[string]time.Time // every key seen, processed or not, with when
	pending map[string][]conversation.Item
}

// prune forgets keys older than the dedupe window, now and then.
func (s *Store) prune(now time.Time) {
	in := &s.inbox
	if in.seq%4096 != 0 {
		return
	}
	for k, at := range in.keys {
		if now.Sub(at) > dedupeWindow {
			delete(in.keys, k)
			s.mark(BucketInboxKeys, k)
		}
	}
}

// Enqueue implements store.Inbox.
func (s *Store) Enqueue(_ context.Context, items []conversation.Item) (fresh []conversation.Item, err error) {
	s.mu.Lock()
	defer s.end(&err)
	for _, it := range items {
		if _, seen := s.inbox.keys[it.Key]; seen {
			continue
		}
		s.inbox.keys[it.Key] = it.Received
		s.inbox.seq++
		s.mark(BucketInboxKeys, it.Key)
		s.mark(BucketMeta, "inbox_seq")
		s.mark(BucketInbox, it.Contact)
		s.prune(it.Received)
		it.Seq = s.inbox.seq
		list := append(s.inbox.pending[it.Contact], it)
		sort.SliceStable(list, func(i, j int) bool {
			if !list[i].Timestamp.Equal(list[j].Timestamp) {
				return list[i].Timestamp.Before(list[j].Timestamp)
			}
			return list[i].Seq < list[j].Seq
		})
		s.inbox.pending[it.Contact] = list
		fresh = append(fresh, it)
	}
	return fresh, nil
}

// Pending implements store.Inbox.
func (s *Store) Pending(_ context.Context, contact string, limit int) ([]conversation.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.inbox.pending[contact]
	if limit > 0 && len(list) > limit {
		list = list[:limit]
	}
	return append([]conversation.Item(nil), list...), nil
}

// Ack implements store.Inbox.
func (s *Store) Ack(_ context.Context, contact string, keys ...string) (err error) {
	s.mu.Lock()
	defer s.end(&err)
	s.mark(BucketInbox, contact)
	done := map[string]bool{}
	for _, k := range keys {
		done[k] = true
	}
	list := s.inbox.pending[contact]
	kept := list[:0]
	for _, it := range list {
		if !done[it.Key] {
			kept = append(kept, it)
		}
	}
	if len(kept) == 0 {
		delete(s.inbox.pending, contact)
	} else {
		s.inbox.pending[contact] = kept
	}
	return nil
}

// Backlog implements store.Inbox.
func (s *Store) Backlog(_ context.Context, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.inbox.pending {
		out = append(out, c)
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Depth implements store.Inbox.
func (s *Store) Depth(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.inbox.pending {
		n += len(l)
	}
	return n, nil
}

// Ping implements store.Store.
func (s *Store) Ping(context.Context) error { return nil }

// Name implements store.Store.
func (s *Store) Name() string { return "memory" }

var _ store.Store = (*Store)(nil)
