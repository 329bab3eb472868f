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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/flowbot/flowbot/engine"
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
	seq    atomic.Int64
	owned  bool

	insertState *batcher[[]any, []error]
	insertQueue *batcher[[]any, []error]
	insertInbox *batcher[[]any, []error]
	dequeue     *batcher[[]string, struct{}]
	pending     *batcher[pendingReq, []store.Item]
	loads       *batcher[string, *loaded]

	// cache holds the states this instance last read or wrote, so that a
	// Load needs no query: the version insert of the next Save fails if
	// another writer moved on meanwhile, and that write then evicts it.
	cacheMu sync.Mutex
	cache   map[string]*engine.State

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
		queue: db.Collection("queue"), bots: db.Collection("bots"),
		stop: make(chan struct{}), done: make(chan struct{}), cache: map[string]*engine.State{}}
	s.SetLogger(slog.New(slog.DiscardHandler))
	s.seq.Store(time.Now().UnixNano())
	// One command of a kind at once: the server serialises writes
	// anyway, and the requests that wait meanwhile make the next command
	// bigger (measured on FerretDB: two or more at once was slower).
	const inflight = 1
	s.insertState = newBatcher(inflight, 500, s.insertMany(s.states))
	s.insertQueue = newBatcher(inflight, 500, s.insertMany(s.queue))
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
		index{"saved", bson.D{{Key: "saved", Value: 1}}, options.Index()},
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
	var docs []store.Item
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

// collector deletes superseded state versions and expired update ids,
// off the hot path.
func (s *Store) collector() {
	defer close(s.done)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*gcInterval)
			if _, err := s.collect(ctx, time.Now()); err != nil {
				s.logger.Load().Warn("collecting old state versions", "err", err)
			}
			cancel()
		}
	}
}

// superseded is a version this instance replaced, to delete once no
// writer can hold it.
type superseded struct {
	id    string
	after time.Time
}

// supersede notes that a Save replaced the contact's version v.
func (s *Store) supersede(contact string, v int64, at time.Time) {
	if v < 1 {
		return
	}
	s.gcMu.Lock()
	s.gcDue = append(s.gcDue, superseded{versionID(contact, v), at.Add(retention)})
	s.gcMu.Unlock()
}

// collect deletes the versions this instance superseded more than the
// retention ago; hourly (and on the first run) it also goes through all
// versions for those no instance noted (its instance died, or they were
// written by an earlier flowbot), and deletes the update ids older than
// the dedupe window. Errors wait for the next round.
func (s *Store) collect(ctx context.Context, now time.Time) (deleted int, err error) {
	s.gcMu.Lock()
	n := 0
	for n < len(s.gcDue) && !s.gcDue[n].after.After(now) {
		n++
	}
	due := s.gcDue[:n:n]
	s.gcMu.Unlock()
	for len(due) > 0 {
		k := min(len(due), 1000)
		ids := make(bson.A, k)
		for i := range ids {
			ids[i] = due[i].id
		}
		res, err := s.states.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return deleted, fmt.Errorf("mongodb: deleting old versions: %w", err)
		}
		deleted += int(res.DeletedCount)
		due = due[k:]
		s.gcMu.Lock()
		s.gcDue = s.gcDue[k:]
		s.gcMu.Unlock()
	}
	if now.Sub(s.lastFullGC) > time.Hour {
		n, err := s.collectAll(ctx, now)
		deleted += n
		if err != nil {
			return deleted, err
		}
		if _, err := s.inbox.DeleteMany(ctx, bson.D{{Key: "received", Value: bson.D{{Key: "$lt", Value: now.Add(-dedupeWindow)}}}}); err != nil {
			return deleted, fmt.Errorf("mongodb: deleting expired update ids: %w", err)
		}
		s.lastFullGC = now
	}
	return deleted, nil
}

// collectAll goes through every version, by contact, latest first, and
// deletes those whose successor was saved more than the retention ago
// (documents of an earlier flowbot have no saved time: they count as
// old).
func (s *Store) collectAll(ctx context.Context, now time.Time) (deleted int, err error) {
	cur, err := s.states.Find(ctx, bson.D{}, options.Find().
		SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "saved", Value: 1}}).
		SetSort(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: -1}})) // the "latest" index
	if err != nil {
		return 0, fmt.Errorf("mongodb: listing old versions: %w", err)
	}
	defer cur.Close(ctx)
	cutoff := now.Add(-retention)
	var ids bson.A
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		res, err := s.states.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return fmt.Errorf("mongodb: deleting old versions: %w", err)
		}
		deleted += int(res.DeletedCount)
		ids = ids[:0]
		return nil
	}
	type ref struct {
		ID      string    `bson:"_id"`
		Contact string    `bson:"contact"`
		Version int64     `bson:"version"`
		Saved   time.Time `bson:"saved"`
	}
	var prev ref
	for cur.Next(ctx) {
		var d ref
		if err := cur.Decode(&d); err != nil {
			return deleted, fmt.Errorf("mongodb: listing old versions: %w", err)
		}
		if prev.Contact == d.Contact && prev.Saved.Before(cutoff) {
			ids = append(ids, d.ID) // its successor came before the cutoff
			if len(ids) == 1000 {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
		}
		prev = d
	}
	if err := cur.Err(); err != nil {
		return deleted, fmt.Errorf("mongodb: listing old versions: %w", err)
	}
	return deleted, flush()
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

// stateDoc is one version of a contact's state: what the store queries
// by, a summary for people looking at the collection, and the state
// itself as one BSON document in binary (the server stores and hands it
// back whole instead of taking it apart on every read: a scan of the
// collection, which FerretDB does for nearly every query, costs a
// fraction). GET /api/contacts/{id} shows it whole.
type stateDoc struct {
	ID      string     `bson:"_id"`
	Contact string     `bson:"contact"`
	Version int64      `bson:"version"`
	NextDue *time.Time `bson:"next_due,omitempty"`
	Saved   time.Time  `bson:"saved"`
	// The summary.
	Flow     string `bson:"flow,omitempty"`
	Step     string `bson:"step,omitempty"`
	Waiting  string `bson:"waiting,omitempty"`
	Handoff  string `bson:"handoff,omitempty"` // the queue
	OptedOut bool   `bson:"opted_out,omitempty"`
	Outbox   int    `bson:"outbox,omitempty"` // messages not sent yet
	// State is the engine's state: binary BSON, or (written by an
	// earlier flowbot) an embedded document.
	State bson.RawValue `bson:"state"`
}

// newStateDoc is the document of st's next version.
func newStateDoc(st *engine.State, next int64, now time.Time) (stateDoc, error) {
	b, err := bson.Marshal(st)
	if err != nil {
		return stateDoc{}, err
	}
	doc := stateDoc{ID: versionID(st.Contact.ID, next), Contact: st.Contact.ID, Version: next, Saved: now,
		Flow: st.Flow, Step: st.Step, Waiting: string(st.Waiting), OptedOut: st.Contact.OptedOut, Outbox: len(st.Outbox),
		State: bson.RawValue{Type: bson.TypeBinary, Value: bsoncore.AppendBinary(nil, 0, b)}}
	if st.Handoff != nil {
		doc.Handoff = st.Handoff.Queue
	}
	if due, ok := st.NextWork(); ok {
		if due.IsZero() {
			due = epoch
		}
		doc.NextDue = &due
	}
	return doc, nil
}

// state decodes the document's state (nil when it has none), with
// documents inside it as maps.
func (d *stateDoc) state() (*engine.State, error) {
	var raw []byte
	switch d.State.Type {
	case 0, bson.TypeNull:
		return nil, nil
	case bson.TypeBinary:
		_, b, _, ok := bsoncore.ReadBinary(d.State.Value)
		if !ok {
			return nil, fmt.Errorf("version %s: a malformed state", d.ID)
		}
		raw = b
	case bson.TypeEmbeddedDocument:
		raw = d.State.Value
	default:
		return nil, fmt.Errorf("version %s: a state of BSON type %s", d.ID, d.State.Type)
	}
	dec := bson.NewDecoder(bson.NewDocumentReader(bytes.NewReader(raw)))
	dec.DefaultDocumentMap()
	st := &engine.State{}
	if err := dec.Decode(st); err != nil {
		return nil, fmt.Errorf("version %s: %w", d.ID, err)
	}
	st.Vars = normalize(st.Vars).(map[string]any)
	return st, nil
}

// epoch stands for "due now" in next_due, which must be a date to sort.
var epoch = time.Unix(0, 0).UTC()

func versionID(contact string, v int64) string { return fmt.Sprintf("%s#%d", contact, v) }

// cacheLimit bounds the cache; past it, entries are dropped at random.
const cacheLimit = 10000

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
	doc, err := s.loads.do(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("mongodb: loading contact %s: %w", id, err)
	}
	if doc == nil {
		return nil, store.ErrNotFound
	}
	// Requests for one contact in one command share the state: each gets
	// its own copy.
	st := engine.NewState(id)
	if doc.state != nil {
		st = doc.state.Clone()
	}
	st.Version = doc.version
	st.LoadedAt = time.Now()
	s.remember(st)
	return st, nil
}

// loaded is a contact's latest version as read.
type loaded struct {
	version int64
	state   *engine.State // nil for a document without one
}

// findLatest reads the latest versions of several contacts (nil for a
// contact never saved): which versions are the latest, from the "latest"
// index, then those documents by id.
func (s *Store) findLatest(ctx context.Context, ids []string) ([]*loaded, error) {
	contacts := bson.A{}
	for _, id := range ids {
		contacts = append(contacts, id)
	}
	cur, err := s.states.Find(ctx, bson.D{{Key: "contact", Value: bson.D{{Key: "$in", Value: contacts}}}},
		options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var refs []struct {
		Contact string `bson:"contact"`
		Version int64  `bson:"version"`
	}
	if err := cur.All(ctx, &refs); err != nil {
		return nil, err
	}
	latest := map[string]int64{}
	for _, r := range refs {
		latest[r.Contact] = max(latest[r.Contact], r.Version)
	}
	byContact := map[string]*loaded{}
	if len(latest) > 0 {
		versions := bson.A{}
		for c, v := range latest {
			versions = append(versions, versionID(c, v))
		}
		cur, err := s.states.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: versions}}}})
		if err != nil {
			return nil, err
		}
		var docs []stateDoc
		if err := cur.All(ctx, &docs); err != nil {
			return nil, err
		}
		for i := range docs {
			st, err := docs[i].state()
			if err != nil {
				return nil, err
			}
			byContact[docs[i].Contact] = &loaded{version: docs[i].Version, state: st}
		}
	}
	out := make([]*loaded, len(ids))
	for i, id := range ids {
		out[i] = byContact[id]
	}
	return out, nil
}

// latestVersion is the contact's latest version in the database (0 for
// none).
func (s *Store) latestVersion(ctx context.Context, id string) (int64, error) {
	var doc struct {
		Version int64 `bson:"version"`
	}
	err := s.states.FindOne(ctx, bson.D{{Key: "contact", Value: id}},
		options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}}).SetProjection(bson.D{{Key: "version", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	return doc.Version, err
}

// Save implements store.Contacts: the next version is inserted under its
// own id, which only one writer can do.
func (s *Store) Save(ctx context.Context, st *engine.State) error {
	if !st.LoadedAt.IsZero() && time.Since(st.LoadedAt) > staleAfter {
		// Held so long that its successor may have come and been
		// collected: go on only if it is still the latest (the latest is
		// never collected, and a successor inserted from now on is there
		// when ours is inserted).
		latest, err := s.latestVersion(ctx, st.Contact.ID)
		if err != nil {
			return fmt.Errorf("mongodb: saving contact %s: %w", st.Contact.ID, err)
		}
		if latest != st.Version {
			s.forget(st.Contact.ID)
			return store.ErrConflict
		}
	}
	next := st.Version + 1
	doc, err := newStateDoc(st, next, time.Now())
	if err != nil {
		return fmt.Errorf("mongodb: saving contact %s: %w", st.Contact.ID, err)
	}
	// A writer that loaded an older version inserts a version that
	// exists, and fails: that is the whole compare-and-swap.
	errs, err := s.insertState.do(ctx, []any{doc})
	if err == nil {
		err = errs[0]
	}
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
	s.supersede(st.Contact.ID, next-1, doc.Saved)
	return nil
}

// Due implements store.Contacts.
func (s *Store) Due(ctx context.Context, t time.Time, limit int) ([]store.Due, error) {
	opts := options.Find().SetSort(bson.D{{Key: "next_due", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	opts.SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "next_due", Value: 1}})
	cur, err := s.states.Find(ctx, bson.D{{Key: "next_due", Value: bson.D{{Key: "$lte", Value: t}}}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
	}
	type ref struct {
		Contact string    `bson:"contact"`
		Version int64     `bson:"version"`
		NextDue time.Time `bson:"next_due"`
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
	var due []store.Due
	var superseded bson.A
	for _, d := range docs {
		if d.Version == latest[d.Contact] {
			at := d.NextDue.UTC()
			if at.Equal(epoch) {
				at = time.Time{}
			}
			due = append(due, store.Due{Contact: d.Contact, At: at})
		} else {
			superseded = append(superseded, versionID(d.Contact, d.Version))
		}
	}
	if len(superseded) > 0 {
		// They would come back every time, and could crowd out the due
		// ones past the limit: they are no longer due.
		if _, err := s.states.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: superseded}}}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "next_due", Value: ""}}}}); err != nil {
			return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
		}
	}
	return due, nil
}

// queueDoc is a queued update: the fields the queue is read by, and the
// update itself as JSON (one string for the server to store and hand
// back, rather than a tree of fields it would decode on every read of
// the queue).
type queueDoc struct {
	Key       string    `bson:"_id"`
	Contact   string    `bson:"contact"`
	Timestamp time.Time `bson:"timestamp"`
	Seq       int64     `bson:"seq"`
	Item      string    `bson:"item"`
}

func newQueueDoc(it store.Item) (queueDoc, error) {
	b, err := json.Marshal(it)
	if err != nil {
		return queueDoc{}, err
	}
	return queueDoc{Key: it.Key, Contact: it.Contact, Timestamp: it.Timestamp, Seq: it.Seq, Item: string(b)}, nil
}

// seenDoc records an update's id in the inbox, for the dedupe window.
type seenDoc struct {
	Key      string    `bson:"_id"`
	Contact  string    `bson:"contact"`
	Received time.Time `bson:"received"`
}

// Enqueue implements store.Inbox. An update goes into the queue first
// (whose ids catch a redelivery while the first is in flight), then its
// id into the inbox (which catches one after it was applied, and then
// takes it out of the queue again). A crash between the two leaves the
// update queued and its id unrecorded: the webhook was not answered, and
// its redelivery is caught by the contact's recently applied ids.
func (s *Store) Enqueue(ctx context.Context, items []store.Item) ([]store.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	docs := make([]any, len(items))
	for i := range items {
		items[i].Seq = s.seq.Add(1)
		doc, err := newQueueDoc(items[i])
		if err != nil {
			return nil, fmt.Errorf("mongodb: queueing update %s: %w", items[i].Key, err)
		}
		docs[i] = doc
	}
	errs, err := s.insertQueue.do(ctx, docs)
	if err != nil {
		return nil, fmt.Errorf("mongodb: queueing updates: %w", err)
	}
	var queued []store.Item
	var seen []any
	for i, err := range errs {
		switch {
		case err == nil:
			queued = append(queued, items[i])
			seen = append(seen, seenDoc{Key: items[i].Key, Contact: items[i].Contact, Received: items[i].Received})
		case !mongo.IsDuplicateKeyError(err):
			return nil, fmt.Errorf("mongodb: queueing update %s: %w", items[i].Key, err)
		}
	}
	if len(queued) == 0 {
		return nil, nil
	}
	errs, err = s.insertInbox.do(ctx, seen)
	if err != nil {
		return nil, fmt.Errorf("mongodb: recording update ids: %w", err)
	}
	var fresh []store.Item
	var dup []string
	for i, err := range errs {
		switch {
		case err == nil:
			fresh = append(fresh, queued[i])
		case mongo.IsDuplicateKeyError(err):
			dup = append(dup, queued[i].Key)
		default:
			return nil, fmt.Errorf("mongodb: recording update id %s: %w", queued[i].Key, err)
		}
	}
	if len(dup) > 0 {
		if _, err := s.dequeue.do(ctx, dup); err != nil {
			return nil, fmt.Errorf("mongodb: dropping redelivered updates: %w", err)
		}
	}
	return fresh, nil
}

// pendingReq asks for a contact's queued updates.
type pendingReq struct {
	contact string
	limit   int
}

// findPending reads the queued updates of several contacts in one query.
func (s *Store) findPending(ctx context.Context, reqs []pendingReq) ([][]store.Item, error) {
	var contacts bson.A
	total := 0
	for _, r := range reqs {
		contacts = append(contacts, r.contact)
		total += r.limit
	}
	for _, r := range reqs {
		if r.limit <= 0 {
			total = 0 // one without a limit: no limit
		}
	}
	opts := options.Find().SetSort(bson.D{{Key: "timestamp", Value: 1}, {Key: "seq", Value: 1}})
	if total > 0 {
		opts.SetLimit(int64(total))
	}
	cur, err := s.queue.Find(ctx, bson.D{{Key: "contact", Value: bson.D{{Key: "$in", Value: contacts}}}}, opts)
	if err != nil {
		return nil, err
	}
	var docs []queueDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	items := make([]store.Item, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal([]byte(d.Item), &items[i]); err != nil {
			return nil, fmt.Errorf("queued update %s: %w", d.Key, err)
		}
	}
	byContact := map[string][]store.Item{}
	for _, it := range items {
		byContact[it.Contact] = append(byContact[it.Contact], it)
	}
	out := make([][]store.Item, len(reqs))
	for i, r := range reqs {
		got := byContact[r.contact]
		// Equal timestamps keep arrival order whatever the server's sort.
		sort.SliceStable(got, func(i, j int) bool {
			if !got[i].Timestamp.Equal(got[j].Timestamp) {
				return got[i].Timestamp.Before(got[j].Timestamp)
			}
			return got[i].Seq < got[j].Seq
		})
		if r.limit > 0 && len(got) > r.limit {
			got = got[:r.limit]
		}
		out[i] = got
	}
	if total > 0 && len(items) == total {
		// The limit cut the answer: a contact short of its own limit may
		// have more; ask for those alone.
		for i, r := range reqs {
			if len(out[i]) < r.limit {
				if out[i], err = s.findPendingOne(ctx, r); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func (s *Store) findPendingOne(ctx context.Context, r pendingReq) ([]store.Item, error) {
	out, err := s.findPending(ctx, []pendingReq{{contact: r.contact, limit: r.limit + 1}})
	if err != nil {
		return nil, err
	}
	if len(out[0]) > r.limit {
		out[0] = out[0][:r.limit]
	}
	return out[0], nil
}

// Pending implements store.Inbox.
func (s *Store) Pending(ctx context.Context, contact string, limit int) ([]store.Item, error) {
	items, err := s.pending.do(ctx, pendingReq{contact: contact, limit: limit})
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading the queue: %w", err)
	}
	return items, nil
}

// deleteQueued takes updates out of the queue, by id.
func (s *Store) deleteQueued(ctx context.Context, reqs [][]string) ([]struct{}, error) {
	var keys bson.A
	for _, r := range reqs {
		for _, k := range r {
			keys = append(keys, k)
		}
	}
	if _, err := s.queue.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}}); err != nil {
		return nil, err
	}
	return make([]struct{}, len(reqs)), nil
}

// Ack implements store.Inbox: the updates leave the queue; their ids stay
// in the inbox.
func (s *Store) Ack(ctx context.Context, contact string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := s.dequeue.do(ctx, keys); err != nil {
		return fmt.Errorf("mongodb: acknowledging updates: %w", err)
	}
	return nil
}

// Depth implements store.Inbox.
func (s *Store) Depth(ctx context.Context) (int, error) {
	n, err := s.queue.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("mongodb: counting the queue: %w", err)
	}
	return int(n), nil
}

// Backlog implements store.Inbox.
func (s *Store) Backlog(ctx context.Context, limit int) ([]string, error) {
	opts := options.Find().SetProjection(bson.D{{Key: "contact", Value: 1}}).SetSort(bson.D{{Key: "contact", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit) * 8)
	}
	cur, err := s.queue.Find(ctx, bson.D{}, opts)
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
	_, err := s.bots.InsertOne(ctx, doc)
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongodb: saving bot version %s: %w", version, err)
	}
	return nil
}

// LoadBot implements store.Bots.
func (s *Store) LoadBot(ctx context.Context, version string) (map[string][]byte, error) {
	var doc botDoc
	err := s.bots.FindOne(ctx, bson.D{{Key: "_id", Value: version}}).Decode(&doc)
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
