package mongo

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store"
)

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
	Flow    string `bson:"flow,omitempty"`
	Step    string `bson:"step,omitempty"`
	Waiting string `bson:"waiting,omitempty"`
	Handoff string `bson:"handoff,omitempty"` // the queue
	// HandoffSince is when the handoff began; WindowUntil when the
	// window closes (GET /api/contacts filters and sorts by them).
	HandoffSince *time.Time `bson:"handoff_since,omitempty"`
	WindowUntil  *time.Time `bson:"window_until,omitempty"`
	OptedOut     bool       `bson:"opted_out,omitempty"`
	Outbox       int        `bson:"outbox,omitempty"` // messages not sent yet
	// ClaimedBy is the instance whose claim the first of them is under:
	// a restarted instance finds its own claims by it.
	ClaimedBy string `bson:"claimed_by,omitempty"`
	// State is the engine's state: binary BSON, or (written by an
	// earlier flowbot) an embedded document.
	State bson.RawValue `bson:"state"`
}

// newStateDoc is the document of st's next version.
func newStateDoc(st *conversation.Record, next int64, now time.Time) (stateDoc, error) {
	b, err := encodeRecord(st)
	if err != nil {
		return stateDoc{}, err
	}
	doc := stateDoc{ID: versionID(st.Contact.ID, next), Contact: st.Contact.ID, Version: next, Saved: now,
		Flow: st.Flow, Step: st.Step, Waiting: string(st.Waiting), OptedOut: st.Contact.OptedOut, Outbox: len(st.Outbox),
		State: bson.RawValue{Type: bson.TypeBinary, Value: bsoncore.AppendBinary(nil, 0, b)}}
	if st.Handoff != nil {
		doc.Handoff = st.Handoff.Queue
		since := st.Handoff.Since
		doc.HandoffSince = &since
	}
	if until := st.WindowExpires(); !until.IsZero() && !st.WindowClosed {
		doc.WindowUntil = &until
	}
	if len(st.Outbox) > 0 {
		doc.ClaimedBy = st.Outbox[0].ClaimedBy
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
func (d *stateDoc) state() (*conversation.Record, error) {
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
	st, err := decodeRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", d.ID, err)
	}
	st.Vars, _ = flows.Normalize(st.Vars).(map[string]any)
	st.Contact.Fields, _ = flows.Normalize(st.Contact.Fields).(map[string]any)
	return st, nil
}

// epoch stands for "due now" in next_due, which must be a date to sort.
var epoch = time.Unix(0, 0).UTC()

func versionID(contact string, v int64) string { return fmt.Sprintf("%s#%d", contact, v) }

// cacheLimit bounds the cache; past it, entries are dropped at random.
const cacheLimit = 10000

func (s *Store) cached(id string) *conversation.Record {
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

func (s *Store) remember(st *conversation.Record) {
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

// forgetOlder drops the cached state of a contact when it is older than
// version v.
func (s *Store) forgetOlder(id string, v int64) {
	s.cacheMu.Lock()
	if st, ok := s.cache[id]; ok && st.Version < v {
		delete(s.cache, id)
	}
	s.cacheMu.Unlock()
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
func (s *Store) Load(ctx context.Context, id string) (*conversation.Record, error) {
	if st := s.cached(id); st != nil {
		return st, nil
	}
	return s.load(ctx, id)
}

// LoadFresh implements store.FreshLoader: the latest version in the
// database, whatever the cache holds.
func (s *Store) LoadFresh(ctx context.Context, id string) (*conversation.Record, error) {
	return s.load(ctx, id)
}

func (s *Store) load(ctx context.Context, id string) (*conversation.Record, error) {
	doc, err := s.loads.do(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("mongodb: loading contact %s: %w", id, err)
	}
	if doc == nil {
		return nil, store.ErrNotFound
	}
	// Requests for one contact in one command share the state: each gets
	// its own copy.
	st := conversation.NewRecord(id)
	if doc.state != nil {
		st = doc.state.Clone()
	}
	st.Version = doc.version
	st.LoadedAt = time.Now()
	s.remember(st)
	return st, nil
}

// latestVersions reads which version of each contact is the latest (a
// contact never saved is missing), from the "latest" index.
func (s *Store) latestVersions(ctx context.Context, contacts []string) (map[string]int64, error) {
	in := make(bson.A, len(contacts))
	for i, c := range contacts {
		in[i] = c
	}
	cur, err := s.states.Find(ctx, bson.D{{Key: "contact", Value: bson.D{{Key: "$in", Value: in}}}},
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
	return latest, nil
}

// loaded is a contact's latest version as read.
type loaded struct {
	version int64
	state   *conversation.Record // nil for a document without one
}

// findLatest reads the latest versions of several contacts (nil for a
// contact never saved): which versions are the latest, from the "latest"
// index, then those documents by id.
func (s *Store) findLatest(ctx context.Context, ids []string) ([]*loaded, error) {
	latest, err := s.latestVersions(ctx, ids)
	if err != nil {
		return nil, err
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
func (s *Store) Save(ctx context.Context, st *conversation.Record) error {
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

// versionRef is a version of a contact's state as a query found it.
type versionRef struct {
	Contact string    `bson:"contact"`
	Version int64     `bson:"version"`
	NextDue time.Time `bson:"next_due"`
}

// keepLatest keeps, of the versions a query found, the contacts' latest
// ones (superseded ones are not deleted yet).
func (s *Store) keepLatest(ctx context.Context, docs []versionRef) ([]versionRef, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	names := make([]string, len(docs))
	for i, d := range docs {
		names[i] = d.Contact
	}
	versions, err := s.latestVersions(ctx, names)
	if err != nil {
		return nil, err
	}
	var latest []versionRef
	for _, d := range docs {
		if d.Version == versions[d.Contact] {
			latest = append(latest, d)
		}
	}
	return latest, nil
}

// Due implements store.Contacts. Superseded versions not deleted yet
// may still say they are due: the query goes on past them, a page at a
// time in (next_due, _id) order, keeping the contacts whose latest
// version is due. It writes nothing: the collector deletes superseded
// versions (an update here on every sweep is what a slow server, FerretDB
// under load, chokes on).
func (s *Store) Due(ctx context.Context, t time.Time, limit int) ([]store.Due, error) {
	page := int64(max(limit, 100))
	var due []store.Due
	var last *versionRef
	for round := 0; round < 20; round++ {
		filter := bson.D{{Key: "next_due", Value: bson.D{{Key: "$lte", Value: t}}}}
		if last != nil {
			filter = append(filter, bson.E{Key: "$or", Value: bson.A{
				bson.D{{Key: "next_due", Value: bson.D{{Key: "$gt", Value: last.NextDue}}}},
				bson.D{{Key: "next_due", Value: last.NextDue}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: versionID(last.Contact, last.Version)}}}},
			}})
		}
		opts := options.Find().SetSort(bson.D{{Key: "next_due", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(page).
			SetProjection(bson.D{{Key: "contact", Value: 1}, {Key: "version", Value: 1}, {Key: "next_due", Value: 1}})
		cur, err := s.states.Find(ctx, filter, opts)
		if err != nil {
			return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
		}
		var docs []versionRef
		if err := cur.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
		}
		latest, err := s.keepLatest(ctx, docs)
		if err != nil {
			return nil, fmt.Errorf("mongodb: listing due timers: %w", err)
		}
		for _, d := range latest {
			at := d.NextDue.UTC()
			if at.Equal(epoch) {
				at = time.Time{}
			}
			due = append(due, store.Due{Contact: d.Contact, At: at})
			// The worker this sends will load the contact: not an older
			// version from the cache, on which the due work may not be (a
			// round that changes nothing saves nothing, so no conflict would
			// tell).
			s.forgetOlder(d.Contact, d.Version)
		}
		if int64(len(docs)) < page || limit > 0 && len(due) >= limit {
			break
		}
		last = &docs[len(docs)-1]
	}
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}
