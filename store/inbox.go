package store

import (
	"context"
	"github.com/flowbot/flowbot/engine/conversation"
)

// Inbox is the durable queue between the webhook and the workers.
type Inbox interface {
	// Enqueue stores items durably, dropping those whose key was stored
	// before (processed or not). It returns the items that were new, with
	// their Seq set. When it returns nil, the new items survive a crash.
	Enqueue(ctx context.Context, items []conversation.Item) ([]conversation.Item, error)
	// Pending returns a contact's unprocessed items, in timestamp order
	// then arrival order, at most limit.
	Pending(ctx context.Context, contact string, limit int) ([]conversation.Item, error)
	// Ack marks items processed.
	Ack(ctx context.Context, contact string, keys ...string) error
	// Backlog lists contacts with unprocessed items, at most limit, for
	// the workers to pick up after a restart or an overload.
	Backlog(ctx context.Context, limit int) ([]string, error)
	// Depth counts the unprocessed items, of every instance.
	Depth(ctx context.Context) (int, error)
}

// Store is everything the server keeps.
type Store interface {
	Contacts
	Inbox
	Instances
	Idempotency
	Templates
	Account
	Campaigns
	Events
	Facts
	Lister
	// Ping checks that the store can be reached.
	Ping(ctx context.Context) error
	// Name says which store this is, for start-up messages.
	Name() string
}
