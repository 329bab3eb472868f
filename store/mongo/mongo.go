// Package mongo is the MongoDB store: contacts' conversation states, the
// queue of webhook updates not applied yet, and the ids of every update
// seen (to drop redeliveries).
//
// A contact's state is written as a new document per version, with the
// id "<contact>#<version>": compare-and-swap is an insert that fails on
// the duplicate id when another writer got the version first. Unique ids
// are the one guarantee every MongoDB-compatible server enforces
// atomically (FerretDB, which the tests run on, does not make a filtered
// replace atomic). Superseded versions are deleted in bulk once no writer
// can still hold them. Only single-document writes are used, no
// transactions, so that it runs on a replica set, a sharded cluster keyed
// by contact, or a wire-compatible server.
//
// The hot path only inserts into large collections and reads and deletes
// in small ones (the queue holds only what is in flight), and concurrent
// requests of one kind share a command (see batcher): under load, a round
// trip carries the writes of many contacts.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/flowbot/flowbot/store"
)

// dedupeWindow is how long the ids of updates are kept to drop
// redeliveries: Meta retries a webhook for up to 7 days.
const dedupeWindow = 8 * 24 * time.Hour

// A superseded version is kept whole for retention after the version
// that replaced it, so that a writer still holding it cannot insert its
// successor again (the id is taken); then it is deleted. A writer that
// held its state longer than staleAfter first checks that it is still
// the latest. The margin between the two covers the clocks of several
// instances.
const (
	staleAfter = 2 * time.Minute
	retention  = 5 * time.Minute
	gcInterval = time.Minute
)

// Store is the MongoDB store. It is safe for concurrent use.
type Store struct {
	client *mongo.Client
	states *mongo.Collection
	inbox  *mongo.Collection // the id of every update seen, for dedupe
	queue  *mongo.Collection // the updates not applied yet
	bots   *mongo.Collection
	// instances holds each instance id's heartbeat.
	instances *mongo.Collection
	// answers holds the answers of API requests by Idempotency-Key.
	answers *mongo.Collection
	// templates holds the templates' live states (store.Templates).
	templates *mongo.Collection
	// account holds the account's states (store.Account).
	account *mongo.Collection
	// campaigns, audience, batches and counts hold campaigns
	// (campaigns.go).
	campaigns, audience, batches, counts *mongo.Collection
	// events holds the events out not delivered yet (events.go).
	events *mongo.Collection
	// facts and factHours hold the analytics' facts (facts.go).
	facts, factHours *mongo.Collection
	seq              atomic.Int64
	owned            bool

	insertState *batcher[[]any, []error]
	insertTally *batcher[[]any, []error]
	insertFacts *batcher[[]any, []error]
	insertQueue *batcher[[]any, []error]
	insertInbox *batcher[[]any, []error]
	dequeue     *batcher[[]string, struct{}]
	pending     *batcher[pendingReq, []conversation.Item]
	loads       *batcher[string, *loaded]

	// cache holds the states this instance last read or wrote, so that a
	// Load needs no query: the version insert of the next Save fails if
	// another writer moved on meanwhile, and that write then evicts it.
	cacheMu sync.Mutex
	cache   map[string]*conversation.Record

	logger atomic.Pointer[slog.Logger]

	gcMu       sync.Mutex
	gcDue      []superseded // in the order saved
	lastFullGC time.Time
	stop       chan struct{}
	done       chan struct{}
}

// Open connects to uri (the database is the URI's, else "flowbot") and
// creates the indexes.
func Open(ctx context.Context, uri string) (*Store, error) {
	return OpenDatabase(ctx, uri, func(db string) string { return db })
}

// OpenDatabase is Open on the database that name makes of the URI's (by
// default "flowbot"): a server serving several numbers keeps each in a
// database of its own.
func OpenDatabase(ctx context.Context, uri string, name func(db string) string) (*Store, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("mongodb: bad connection string: %w", err)
	}
	db := cs.Database
	if db == "" {
		db = "flowbot"
	}
	db = name(db)
	client, err := mongo.Connect(clientOptions(cs, uri))
	if err != nil {
		return nil, fmt.Errorf("mongodb: connecting: %w", err)
	}
	s, err := New(ctx, client.Database(db))
	if err != nil {
		client.Disconnect(context.Background())
		return nil, err
	}
	s.owned = true
	return s, nil
}

// clientOptions are the client's options for a connection string.
func clientOptions(cs *connstring.ConnString, uri string) *options.ClientOptions {
	opts := options.Client().ApplyURI(uri).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true})
	if !cs.WNumberSet && cs.WString == "" {
		// A webhook is answered 200 once its updates are written: on a
		// replica set, written to a majority, so that a failover keeps
		// them. The connection string's w= overrides this.
		opts.SetWriteConcern(writeconcern.Majority())
	}
	return opts
}

// New uses a database of an existing client (its BSON options must decode
// documents as map[string]any) and creates the indexes.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	// Reads from the primary, whatever the connection string prefers: a
	// secondary lags, and the queue and the latest versions must be
	// current (a state read there would only fail to save, but a queue
	// read there could miss an update another instance accepted).
	primary := options.Collection().SetReadPreference(readpref.Primary())
	s := &Store{client: db.Client(), states: db.Collection("states", primary), inbox: db.Collection("inbox", primary),
		queue: db.Collection("queue", primary), bots: db.Collection("bots", primary), instances: db.Collection("instances", primary), answers: db.Collection("answers", primary),
		templates: db.Collection("templates", primary),
		account:   db.Collection("account", primary),
		campaigns: db.Collection("campaigns", primary), audience: db.Collection("audience", primary),
		batches: db.Collection("campaign_batches", primary), counts: db.Collection("campaign_counts", primary),
		events: db.Collection("events", primary),
		facts:  db.Collection("facts", primary), factHours: db.Collection("fact_hours", primary),
		stop: make(chan struct{}), done: make(chan struct{}), cache: map[string]*conversation.Record{}}
	s.SetLogger(slog.New(slog.DiscardHandler))
	s.seq.Store(time.Now().UnixNano())
	// One command of a kind at once: the server serialises writes
	// anyway, and the requests that wait meanwhile make the next command
	// bigger (measured on FerretDB: two or more at once was slower).
	const inflight = 1
	s.insertState = newBatcher(inflight, 500, s.insertMany(s.states))
	s.insertQueue = newBatcher(inflight, 500, s.insertMany(s.queue))
	s.insertTally = newBatcher(inflight, 500, s.insertMany(s.counts))
	s.insertFacts = newBatcher(inflight, 500, s.insertMany(s.facts))
	s.insertInbox = newBatcher(inflight, 500, s.insertMany(s.inbox))
	s.dequeue = newBatcher(inflight, 100, s.deleteQueued)
	s.pending = newBatcher(inflight, 100, s.findPending)
	s.loads = newBatcher(inflight, 100, s.findLatest)

	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.client.Ping(pctx, nil); err != nil {
		return nil, fmt.Errorf("mongodb: cannot reach the server: %w", err)
	}
	if err := ensureIndexes(pctx, s.states,
		index{"latest", bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}}, options.Index()},
		index{"next_due", bson.D{{Key: "next_due", Value: 1}}, options.Index().SetSparse(true)},
		index{"claimed_by", bson.D{{Key: "claimed_by", Value: 1}}, options.Index().SetSparse(true)},
		index{"handoff", bson.D{{Key: "handoff_since", Value: 1}, {Key: "contact", Value: 1}}, options.Index().SetSparse(true)},
		index{"flow_step", bson.D{{Key: "flow", Value: 1}, {Key: "step", Value: 1}, {Key: "contact", Value: 1}}, options.Index()},
	); err != nil {
		return nil, fmt.Errorf("mongodb: creating the states indexes: %w", err)
	}
	if err := ensureIndexes(pctx, s.queue,
		index{"pending", bson.D{{Key: "contact", Value: 1}, {Key: "timestamp", Value: 1}, {Key: "seq", Value: 1}}, options.Index()},
	); err != nil {
		return nil, fmt.Errorf("mongodb: creating the queue indexes: %w", err)
	}
	// The ids expire after the dedupe window where the server can
	// (MongoDB); where it cannot (FerretDB), the collector deletes them.
	ensureIndexes(pctx, s.inbox, index{"expire", bson.D{{Key: "received", Value: 1}}, options.Index().SetExpireAfterSeconds(int32(dedupeWindow / time.Second))})
	ensureIndexes(pctx, s.answers, index{"expire", bson.D{{Key: "at", Value: 1}}, options.Index().SetExpireAfterSeconds(int32(store.IdempotencyWindow / time.Second))})
	if err := s.eventIndexes(pctx); err != nil {
		return nil, fmt.Errorf("mongodb: creating the events' indexes: %w", err)
	}
	if err := s.campaignIndexes(pctx); err != nil {
		return nil, fmt.Errorf("mongodb: creating the campaigns' indexes: %w", err)
	}
	if err := s.factIndexes(pctx); err != nil {
		return nil, fmt.Errorf("mongodb: creating the facts' indexes: %w", err)
	}
	if err := s.migrate(pctx); err != nil {
		return nil, err
	}
	go s.collector()
	return s, nil
}

// migrate moves the updates that an earlier flowbot left queued in the
// inbox (with done: false) to the queue.
func (s *Store) migrate(ctx context.Context) error {
	cur, err := s.inbox.Find(ctx, bson.D{{Key: "done", Value: false}})
	if err != nil {
		return fmt.Errorf("mongodb: reading updates queued by an earlier version: %w", err)
	}
	var docs []conversation.Item
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("mongodb: reading updates queued by an earlier version: %w", err)
	}
	for _, it := range docs {
		doc, err := newQueueDoc(it)
		if err != nil {
			return fmt.Errorf("mongodb: moving update %s to the queue: %w", it.Key, err)
		}
		if _, err := s.queue.InsertOne(ctx, doc); err != nil && !mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("mongodb: moving update %s to the queue: %w", it.Key, err)
		}
		if _, err := s.inbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: it.Key}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "done", Value: ""}}}}); err != nil {
			return fmt.Errorf("mongodb: moving update %s to the queue: %w", it.Key, err)
		}
	}
	return nil
}

// ensureIndexes creates the indexes a collection lacks, by name, one at a
// time (FerretDB fails on creating several that already exist at once).
type index struct {
	name string
	keys bson.D
	opts *options.IndexOptionsBuilder
}

func ensureIndexes(ctx context.Context, c *mongo.Collection, indexes ...index) error {
	cur, err := c.Indexes().List(ctx)
	if err != nil {
		return err
	}
	var existing []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &existing); err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range existing {
		have[e.Name] = true
	}
	for _, ix := range indexes {
		if have[ix.name] {
			continue
		}
		if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys, Options: ix.opts.SetName(ix.name)}); err != nil {
			return err
		}
	}
	return nil
}

// SetLogger sets where what goes wrong off the hot path is logged (by
// default, nowhere).
func (s *Store) SetLogger(l *slog.Logger) { s.logger.Store(l) }

// Close stops the store and disconnects a store opened with Open.
func (s *Store) Close(ctx context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	if s.owned {
		return s.client.Disconnect(ctx)
	}
	return nil
}

// insertMany returns a batcher's command that inserts every request's
// documents in one unordered insert, and gives each document its own
// outcome (nil, or a duplicate key error).
func (s *Store) insertMany(c *mongo.Collection) func(context.Context, [][]any) ([][]error, error) {
	return func(ctx context.Context, reqs [][]any) ([][]error, error) {
		var docs []any
		for _, r := range reqs {
			docs = append(docs, r...)
		}
		_, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		out := make([][]error, len(reqs))
		for i, r := range reqs {
			out[i] = make([]error, len(r))
		}
		if err == nil {
			return out, nil
		}
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
			return nil, err
		}
		for _, we := range bwe.WriteErrors {
			// Back from the flat index to the request and its document.
			i := we.Index
			for r := range reqs {
				if i < len(reqs[r]) {
					out[r][i] = we
					break
				}
				i -= len(reqs[r])
			}
		}
		return out, nil
	}
}

// Name implements store.Store.
func (s *Store) Name() string { return "mongodb" }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx, nil) }

var _ store.Store = (*Store)(nil)
var _ store.FreshLoader = (*Store)(nil)
