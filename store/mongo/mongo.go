// Package mongo is the MongoDB store: contacts' conversation states and
// the inbox (one document per webhook update, unique by WhatsApp's id).
//
// A contact's state is written as a new document per version, with the
// id "<contact>#<version>": compare-and-swap is an insert that fails on
// the duplicate id when another writer got the version first. Unique ids
// are the one guarantee every MongoDB-compatible server enforces
// atomically (FerretDB, which the tests run on, does not make a filtered
// replace atomic); older versions are deleted behind the writes. Only
// single-document writes are used, no transactions, so that it runs on a
// replica set, a sharded cluster keyed by contact, or a wire-compatible
// server.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
)

// dedupeWindow is how long processed inbox items are kept to drop
// redeliveries: Meta retries a webhook for up to 7 days.
const dedupeWindow = 8 * 24 * time.Hour

// A superseded version loses its state at once but its id is kept for
// tombstoneTTL, so that a writer holding an old version cannot insert its
// successor again; a writer holding a state longer than staleAfter gives
// up (a conflict: it loads again), which keeps that safe.
const (
	tombstoneTTL = time.Hour
	staleAfter   = 10 * time.Minute
)

// Store is the MongoDB store. It is safe for concurrent use.
type Store struct {
	client *mongo.Client
	states *mongo.Collection
	inbox  *mongo.Collection
	seq    atomic.Int64
	owned  bool

	// cache holds the states this instance last read or wrote, so that a
	// Load needs no query: the version insert of the next Save fails if
	// another writer moved on meanwhile, and that write then evicts it.
	cacheMu sync.Mutex
	cache   map[string]*engine.State

	pruneMu   sync.Mutex
	prune     map[string]int64 // contact → delete versions below this
	pruneKick chan struct{}
	lastSweep time.Time
	stop      chan struct{}
	done      chan struct{}
}

// Open connects to uri (the database is the URI's, else "flowbot") and
// creates the indexes.
func Open(ctx context.Context, uri string) (*Store, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("mongodb: bad connection string: %w", err)
	}
	db := cs.Database
	if db == "" {
		db = "flowbot"
	}
	opts := options.Client().ApplyURI(uri).SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true})
	client, err := mongo.Connect(opts)
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

// New uses a database of an existing client (its BSON options must decode
// documents as map[string]any) and creates the indexes.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	s := &Store{client: db.Client(), states: db.Collection("states"), inbox: db.Collection("inbox"),
		prune: map[string]int64{}, pruneKick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		cache: map[string]*engine.State{}}
	s.seq.Store(time.Now().UnixNano())
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.client.Ping(pctx, nil); err != nil {
		return nil, fmt.Errorf("mongodb: cannot reach the server: %w", err)
	}
	if err := ensureIndexes(pctx, s.states,
		index{"latest", bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}}, options.Index()},
		index{"next_due", bson.D{{Key: "next_due", Value: 1}}, options.Index().SetSparse(true)},
	); err != nil {
		return nil, fmt.Errorf("mongodb: creating the states indexes: %w", err)
	}
	if err := ensureIndexes(pctx, s.inbox,
		index{"pending", bson.D{{Key: "contact", Value: 1}, {Key: "done", Value: 1}, {Key: "timestamp", Value: 1}, {Key: "seq", Value: 1}}, options.Index()},
		index{"backlog", bson.D{{Key: "done", Value: 1}, {Key: "contact", Value: 1}}, options.Index()},
	); err != nil {
		return nil, fmt.Errorf("mongodb: creating the inbox indexes: %w", err)
	}
	// Processed items expire after the dedupe window where the server can
	// (MongoDB); a server without TTL indexes (FerretDB) keeps them.
	ensureIndexes(pctx, s.inbox, index{"expire_done", bson.D{{Key: "done_at", Value: 1}}, options.Index().SetExpireAfterSeconds(int32(dedupeWindow / time.Second))})
	go s.pruner()
	return s, nil
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

// Close stops the store (deleting the old versions still due) and
// disconnects a store opened with Open.
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

// pruner deletes superseded state versions in batches, off the hot path.
func (s *Store) pruner() {
	defer close(s.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flushPrune()
			return
		case <-t.C:
			s.flushPrune()
		case <-s.pruneKick:
			s.flushPrune()
		}
	}
}

func (s *Store) flushPrune() {
	s.pruneMu.Lock()
	batch := s.prune
	s.prune = map[string]int64{}
	s.pruneMu.Unlock()
	if len(batch) == 0 {
		return
	}
	var or bson.A
	for c, v := range batch {
		or = append(or, bson.D{{Key: "contact", Value: c}, {Key: "version", Value: bson.D{{Key: "$lt", Value: v}}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	_, err := s.states.UpdateMany(ctx,
		bson.D{{Key: "$or", Value: or}, {Key: "tombstone", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "state", Value: ""}, {Key: "next_due", Value: ""}}}, {Key: "$set", Value: bson.D{{Key: "tombstone", Value: now}}}})
	if err != nil {
		// Keep them for the next round.
		s.pruneMu.Lock()
		for c, v := range batch {
			if v > s.prune[c] {
				s.prune[c] = v
			}
		}
		s.pruneMu.Unlock()
		return
	}
	if now.Sub(s.lastSweep) > time.Minute {
		s.lastSweep = now
		s.states.DeleteMany(ctx, bson.D{{Key: "tombstone", Value: bson.D{{Key: "$lt", Value: now.Add(-tombstoneTTL)}}}})
	}
}

func (s *Store) schedulePrune(contact string, below int64) {
	s.pruneMu.Lock()
	if below > s.prune[contact] {
		s.prune[contact] = below
	}
	n := len(s.prune)
	s.pruneMu.Unlock()
	if n >= 500 {
		select {
		case s.pruneKick <- struct{}{}:
		default:
		}
	}
}

// Name implements store.Store.
func (s *Store) Name() string { return "mongodb" }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx, nil) }

// stateDoc is one version of a contact's state, plus what the store
// indexes.
type stateDoc struct {
	ID      string        `bson:"_id"`
	Contact string        `bson:"contact"`
	Version int64         `bson:"version"`
	NextDue *time.Time    `bson:"next_due,omitempty"`
	State   *engine.State `bson:"state"`
}

func versionID(contact string, v int64) string { return fmt.Sprintf("%s#%d", contact, v) }

// cacheLimit bounds the cache; past it, entries are dropped at random.
const cacheLimit = 50000

func (s *Store) cached(id string) *engine.State {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	st, ok := s.cache[id]
	if !ok {
		return nil
	}
	// Only as long as a superseded version's id is sure to be kept.
	if time.Since(st.LoadedAt) > staleAfter/2 {
		delete(s.cache, id)
		return nil
	}
	return st.Clone()
}

func (s *Store) remember(st *engine.State) {
	c := st.Clone()
	c.LoadedAt = time.Now()
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if len(s.cache) >= cacheLimit {
		for k := range s.cache {
			delete(s.cache, k)
			if len(s.cache) < cacheLimit*9/10 {
				break
			}
		}
	}
	s.cache[st.Contact.ID] = c
}

func (s *Store) forget(id string) {
	s.cacheMu.Lock()
	delete(s.cache, id)
	s.cacheMu.Unlock()
}

// Load implements store.Contacts: the latest version this instance knows
// of, else the latest in the database. A state another instance has
// moved on from fails to save (a conflict), and the next Load reads the
// database.
func (s *Store) Load(ctx context.Context, id string) (*engine.State, error) {
	if st := s.cached(id); st != nil {
		return st, nil
	}
	return s.load(ctx, id)
}

func (s *Store) load(ctx context.Context, id string) (*engine.State, error) {
	var doc stateDoc
	err := s.states.FindOne(ctx, bson.D{{Key: "contact", Value: id}},
		options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: loading contact %s: %w", id, err)
	}
	st := doc.State
	if st == nil {
		st = engine.NewState(id)
	}
	st.Version = doc.Version
	st.LoadedAt = time.Now()
	st.Vars = normalize(st.Vars).(map[string]any)
	if doc.Version > 1 {
		// Versions left behind by a crash before their deletion.
		s.schedulePrune(id, doc.Version)
	}
	s.remember(st)
	return st, nil
}

// Save implements store.Contacts: the next version is inserted under its
// own id, which only one writer can do.
func (s *Store) Save(ctx context.Context, st *engine.State) error {
	if !st.LoadedAt.IsZero() && time.Since(st.LoadedAt) > staleAfter {
		return store.ErrConflict
	}
	next := st.Version + 1
	doc := stateDoc{ID: versionID(st.Contact.ID, next), Contact: st.Contact.ID, Version: next, State: st}
	if due, ok := st.NextWork(); ok {
		if due.IsZero() {
			due = time.Unix(0, 0).UTC()
		}
		doc.NextDue = &due
	}
	// A writer that loaded an older version inserts a version that
	// exists, and fails: that is the whole compare-and-swap.
	_, err := s.states.InsertOne(ctx, doc)
	if mongo.IsDuplicateKeyError(err) {
		s.forget(st.Contact.ID)
		return store.ErrConflict
	}
	if err != nil {
		s.forget(st.Contact.ID)
		return fmt.Errorf("mongodb: saving contact %s: %w", st.Contact.ID, err)
	}
	st.Version = next
	s.remember(st)
	if next > 1 {
		s.schedulePrune(st.Contact.ID, next)
	}
	return nil
}

// Due implements store.Contacts.
func (s *Store) Due(ctx context.Context, t time.Time, limit int) ([]string, error) {
	opts := options.Find().SetSort(bson.D{{Key: "next_due", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	opts.SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}})
	cur, err := s.states.Find(ctx, bson.D{{Key: "next_due", Value: bson.D{{Key: "$lte", Value: t}}}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
	}
	type ref struct {
		Contact string `bson:"contact"`
		Version int64  `bson:"version"`
	}
	var docs []ref
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
	}
	if len(docs) == 0 {
		return nil, nil
	}
	// A superseded version not deleted yet may still say it is due:
	// keep only the contacts whose latest version does.
	var names bson.A
	for _, d := range docs {
		names = append(names, d.Contact)
	}
	cur, err = s.states.Find(ctx, bson.D{{Key: "contact", Value: bson.D{{Key: "$in", Value: names}}}},
		options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
	}
	var all []ref
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
	}
	latest := map[string]int64{}
	for _, d := range all {
		latest[d.Contact] = max(latest[d.Contact], d.Version)
	}
	var ids []string
	for _, d := range docs {
		if d.Version == latest[d.Contact] {
			ids = append(ids, d.Contact)
		}
	}
	return ids, nil
}

// itemDoc is an inbox item's document.
type itemDoc struct {
	store.Item `bson:",inline"`
	Done       bool       `bson:"done"`
	DoneAt     *time.Time `bson:"done_at,omitempty"`
}

// Enqueue implements store.Inbox: one unordered insert; the items whose
// key is already there fail with a duplicate key error and are dropped.
func (s *Store) Enqueue(ctx context.Context, items []store.Item) ([]store.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	docs := make([]any, len(items))
	for i := range items {
		items[i].Seq = s.seq.Add(1)
		docs[i] = itemDoc{Item: items[i]}
	}
	_, err := s.inbox.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return items, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, fmt.Errorf("mongodb: queueing updates: %w", err)
	}
	dup := map[int]bool{}
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return nil, fmt.Errorf("mongodb: queueing updates: %w", err)
		}
		dup[we.Index] = true
	}
	var fresh []store.Item
	for i, it := range items {
		if !dup[i] {
			fresh = append(fresh, it)
		}
	}
	return fresh, nil
}

// Pending implements store.Inbox.
func (s *Store) Pending(ctx context.Context, contact string, limit int) ([]store.Item, error) {
	opts := options.Find().SetSort(bson.D{{Key: "timestamp", Value: 1}, {Key: "seq", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.inbox.Find(ctx, bson.D{{Key: "contact", Value: contact}, {Key: "done", Value: false}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading the inbox: %w", err)
	}
	var docs []itemDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: reading the inbox: %w", err)
	}
	out := make([]store.Item, len(docs))
	for i, d := range docs {
		out[i] = d.Item
	}
	// Equal timestamps keep arrival order whatever the server's sort.
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Timestamp.Equal(out[j].Timestamp) {
			return out[i].Timestamp.Before(out[j].Timestamp)
		}
		return out[i].Seq < out[j].Seq
	})
	return out, nil
}

// Ack implements store.Inbox.
func (s *Store) Ack(ctx context.Context, contact string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := s.inbox.UpdateMany(ctx,
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}, {Key: "contact", Value: contact}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: true}, {Key: "done_at", Value: time.Now()}}}})
	if err != nil {
		return fmt.Errorf("mongodb: acknowledging updates: %w", err)
	}
	return nil
}

// Depth implements store.Inbox.
func (s *Store) Depth(ctx context.Context) (int, error) {
	n, err := s.inbox.CountDocuments(ctx, bson.D{{Key: "done", Value: false}})
	if err != nil {
		return 0, fmt.Errorf("mongodb: counting the inbox: %w", err)
	}
	return int(n), nil
}

// Backlog implements store.Inbox.
func (s *Store) Backlog(ctx context.Context, limit int) ([]string, error) {
	opts := options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}}).SetSort(bson.D{{Key: "contact", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit) * 8)
	}
	cur, err := s.inbox.Find(ctx, bson.D{{Key: "done", Value: false}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing the backlog: %w", err)
	}
	var docs []struct {
		Contact string `bson:"contact"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: listing the backlog: %w", err)
	}
	var contacts []string
	for _, d := range docs {
		if len(contacts) == 0 || contacts[len(contacts)-1] != d.Contact {
			contacts = append(contacts, d.Contact)
		}
	}
	if limit > 0 && len(contacts) > limit {
		contacts = contacts[:limit]
	}
	return contacts, nil
}

// normalize turns what BSON gives back for flow variables into the plain
// types the engine works with: lists as []any, whole numbers as int.
func normalize(v any) any {
	switch v := v.(type) {
	case nil:
		return map[string]any(nil)
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeValue(e)
		}
		return v
	}
	return v
}

func normalizeValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return normalize(v)
	case bson.M:
		return normalize(map[string]any(v))
	case bson.A:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalizeValue(e)
		}
		return out
	case []any:
		for i, e := range v {
			v[i] = normalizeValue(e)
		}
		return v
	case int32:
		return int(v)
	case int64:
		return int(v)
	case bson.DateTime:
		return v.Time().UTC()
	}
	return v
}

var _ store.Store = (*Store)(nil)

// botDoc is a bot version's files; names hold dots, which keys may not.
type botDoc struct {
	ID    string    `bson:"_id"`
	Files []botFile `bson:"files"`
	Saved time.Time `bson:"saved"`
}

type botFile struct {
	Name string `bson:"name"`
	Data []byte `bson:"data"`
}

// SaveBot implements store.Bots.
func (s *Store) SaveBot(ctx context.Context, version string, files map[string][]byte) error {
	doc := botDoc{ID: version, Saved: time.Now()}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		doc.Files = append(doc.Files, botFile{Name: n, Data: files[n]})
	}
	_, err := s.states.Database().Collection("bots").InsertOne(ctx, doc)
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongodb: saving bot version %s: %w", version, err)
	}
	return nil
}

// LoadBot implements store.Bots.
func (s *Store) LoadBot(ctx context.Context, version string) (map[string][]byte, error) {
	var doc botDoc
	err := s.states.Database().Collection("bots").FindOne(ctx, bson.D{{Key: "_id", Value: version}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: loading bot version %s: %w", version, err)
	}
	files := make(map[string][]byte, len(doc.Files))
	for _, f := range doc.Files {
		files[f.Name] = f.Data
	}
	return files, nil
}

var _ store.Bots = (*Store)(nil)
