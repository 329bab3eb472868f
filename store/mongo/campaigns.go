package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowbot/flowbot/store"
)

// Campaigns live in four collections: campaigns (one small document
// each), audience (a campaign's contacts, store.AudiencePage to a
// document, so that no document nears MongoDB's 16 MB), campaign_batches
// (the batches handed out: claimed by inserting them, which every
// MongoDB-compatible server makes atomic) and campaign_counts (one
// document per tally drained from a contact's record, keyed by campaign,
// contact and record version: inserted once, summed on reading).

type audienceDoc struct {
	ID       string                  `bson:"_id"`
	Campaign string                  `bson:"campaign"`
	Page     int                     `bson:"page"`
	Contacts []store.AudienceContact `bson:"contacts"`
}

type batchDoc struct {
	ID                  string `bson:"_id"`
	store.CampaignBatch `bson:",inline"`
}

func batchID(campaign string, n int) string { return fmt.Sprintf("%s/%09d", campaign, n) }

// campaignIndexes creates the indexes of the campaign collections.
// (A campaign's fingerprint is reserved in answers, under a unique id:
// nothing queries campaigns by it.)
func (s *Store) campaignIndexes(ctx context.Context) error {
	if err := ensureIndexes(ctx, s.batches, index{"last", bson.D{{Key: "campaign", Value: 1}, {Key: "n", Value: -1}}, options.Index()}); err != nil {
		return err
	}
	return ensureIndexes(ctx, s.counts, index{"campaign", bson.D{{Key: "campaign", Value: 1}}, options.Index()})
}

// CreateCampaign implements store.Campaigns.
func (s *Store) CreateCampaign(ctx context.Context, c store.Campaign) error {
	if _, err := s.campaigns.InsertOne(ctx, c); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return store.ErrConflict
		}
		return fmt.Errorf("mongodb: creating campaign %s: %w", c.ID, err)
	}
	return nil
}

// PutAudience implements store.Campaigns.
func (s *Store) PutAudience(ctx context.Context, id string, page int, contacts []store.AudienceContact) error {
	doc := audienceDoc{ID: fmt.Sprintf("%s/%06d", id, page), Campaign: id, Page: page, Contacts: contacts}
	_, err := s.audience.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: storing page %d of campaign %s: %w", page, id, err)
	}
	return nil
}

// Audience implements store.Campaigns.
func (s *Store) Audience(ctx context.Context, id string, page int) ([]store.AudienceContact, error) {
	var doc audienceDoc
	err := s.audience.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%s/%06d", id, page)}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading page %d of campaign %s: %w", page, id, err)
	}
	return doc.Contacts, nil
}

func (s *Store) findCampaign(ctx context.Context, filter bson.D) (*store.Campaign, error) {
	var c store.Campaign
	err := s.campaigns.FindOne(ctx, filter).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading a campaign: %w", err)
	}
	return &c, nil
}

// Campaign implements store.Campaigns.
func (s *Store) Campaign(ctx context.Context, id string) (*store.Campaign, error) {
	return s.findCampaign(ctx, bson.D{{Key: "_id", Value: id}})
}

// ListCampaigns implements store.Campaigns.
func (s *Store) ListCampaigns(ctx context.Context) ([]store.Campaign, error) {
	cur, err := s.campaigns.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("mongodb: listing campaigns: %w", err)
	}
	var out []store.Campaign
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("mongodb: listing campaigns: %w", err)
	}
	return out, nil
}

// UpdateCampaign implements store.Campaigns.
func (s *Store) UpdateCampaign(ctx context.Context, id string, from []store.CampaignState, u store.CampaignUpdate) error {
	set := bson.D{}
	if u.State != "" {
		set = append(set, bson.E{Key: "state", Value: u.State})
	}
	if !u.HandedOut.IsZero() {
		set = append(set, bson.E{Key: "handed_out", Value: u.HandedOut})
	}
	if !u.FinishedAt.IsZero() {
		set = append(set, bson.E{Key: "finished_at", Value: u.FinishedAt})
	}
	if u.Announced {
		set = append(set, bson.E{Key: "announced", Value: true})
	}
	filter := bson.D{{Key: "_id", Value: id}}
	if len(from) > 0 {
		filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: from}}})
	}
	if len(set) == 0 {
		set = bson.D{{Key: "_id", Value: id}}
	}
	res, err := s.campaigns.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("mongodb: updating campaign %s: %w", id, err)
	}
	if res.MatchedCount == 0 {
		c, err := s.Campaign(ctx, id)
		if err != nil {
			return err
		}
		return &store.ErrWrongState{State: c.State}
	}
	return nil
}

// ClaimBatch implements store.Campaigns.
func (s *Store) ClaimBatch(ctx context.Context, b store.CampaignBatch) error {
	if _, err := s.batches.InsertOne(ctx, batchDoc{ID: batchID(b.Campaign, b.N), CampaignBatch: b}); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return store.ErrConflict
		}
		return fmt.Errorf("mongodb: claiming batch %d of campaign %s: %w", b.N, b.Campaign, err)
	}
	return nil
}

func (s *Store) findBatches(ctx context.Context, filter bson.D, opts ...options.Lister[options.FindOptions]) ([]store.CampaignBatch, error) {
	cur, err := s.batches.Find(ctx, filter, opts...)
	if err != nil {
		return nil, fmt.Errorf("mongodb: reading a campaign's batches: %w", err)
	}
	var docs []batchDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: reading a campaign's batches: %w", err)
	}
	out := make([]store.CampaignBatch, len(docs))
	for i, d := range docs {
		out[i] = d.CampaignBatch
	}
	return out, nil
}

// Batch implements store.Campaigns.
func (s *Store) Batch(ctx context.Context, id string, n int) (*store.CampaignBatch, error) {
	bs, err := s.findBatches(ctx, bson.D{{Key: "_id", Value: batchID(id, n)}})
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, store.ErrNotFound
	}
	return &bs[0], nil
}

// LastBatch implements store.Campaigns.
func (s *Store) LastBatch(ctx context.Context, id string) (*store.CampaignBatch, error) {
	bs, err := s.findBatches(ctx, bson.D{{Key: "campaign", Value: id}}, options.Find().SetSort(bson.D{{Key: "n", Value: -1}}).SetLimit(1))
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, store.ErrNotFound
	}
	return &bs[0], nil
}

// OpenBatches implements store.Campaigns.
func (s *Store) OpenBatches(ctx context.Context, id string) ([]store.CampaignBatch, error) {
	return s.findBatches(ctx, bson.D{{Key: "campaign", Value: id}, {Key: "done", Value: false}}, options.Find().SetSort(bson.D{{Key: "n", Value: 1}}))
}

// UpdateBatch implements store.Campaigns: the update filters on the
// holder, the lease and not done, as read.
func (s *Store) UpdateBatch(ctx context.Context, was, b store.CampaignBatch) error {
	set := bson.D{{Key: "by", Value: b.By}, {Key: "until", Value: b.Until}, {Key: "done", Value: b.Done}}
	id := batchID(b.Campaign, b.N)
	res, err := s.batches.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "by", Value: was.By},
		{Key: "until", Value: was.Until.Truncate(time.Millisecond)}, {Key: "done", Value: false}}, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("mongodb: updating batch %d of campaign %s: %w", b.N, b.Campaign, err)
	}
	if res.MatchedCount == 0 {
		if _, err := s.Batch(ctx, b.Campaign, b.N); err != nil {
			return err
		}
		return store.ErrConflict
	}
	return nil
}

// SetPace implements store.Campaigns: the update filters on the pace read.
func (s *Store) SetPace(ctx context.Context, id string, was, to store.Pace) error {
	filter := bson.D{{Key: "_id", Value: id}, {Key: "factor", Value: was.Factor}}
	if was.SlowedAt.IsZero() {
		filter = append(filter, bson.E{Key: "slowed_at", Value: bson.D{{Key: "$exists", Value: false}}})
	} else {
		filter = append(filter, bson.E{Key: "slowed_at", Value: was.SlowedAt.Truncate(time.Millisecond)})
	}
	res, err := s.campaigns.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "factor", Value: to.Factor}, {Key: "slowed_at", Value: to.SlowedAt}}}})
	if err != nil {
		return fmt.Errorf("mongodb: setting campaign %s's pace: %w", id, err)
	}
	if res.MatchedCount == 0 {
		if _, err := s.Campaign(ctx, id); err != nil {
			return err
		}
		return store.ErrConflict
	}
	return nil
}

// tallyDoc is one drained tally of one campaign: its id is the tally's
// key (store.TallyKey), so that draining it again is a duplicate insert,
// which every MongoDB-compatible server refuses atomically.
type tallyDoc struct {
	ID       string                   `bson:"_id"`
	Campaign string                   `bson:"campaign"`
	At       time.Time                `bson:"at"`
	Started  int                      `bson:"started,omitempty"`
	OptedOut int                      `bson:"opted_out,omitempty"`
	Busy     int                      `bson:"busy,omitempty"`
	Limit    int                      `bson:"limit,omitempty"`
	Sent     int                      `bson:"sent,omitempty"`
	Deliv    int                      `bson:"delivered,omitempty"`
	Read     int                      `bson:"read,omitempty"`
	Failed   int                      `bson:"failed,omitempty"`
	Outbox   int                      `bson:"outbox,omitempty"`
	Cost     *conversation.CostCounts `bson:"cost,omitempty"`
	CostEst  *conversation.CostCounts `bson:"cost_estimated,omitempty"`
}

// DrainTallies implements store.Campaigns: one insert per campaign and
// version, a duplicate (drained before) skipped.
func (s *Store) DrainTallies(ctx context.Context, contact string, tallies []conversation.TallyOut) error {
	var docs []any
	for _, t := range tallies {
		for _, c := range t.Campaigns {
			n := c.CampaignCounts
			d := tallyDoc{ID: store.TallyKey(c.Campaign, contact, t.Version), Campaign: c.Campaign, At: t.At,
				Started: n.Started, OptedOut: n.OptedOut, Busy: n.Busy, Limit: n.Limit, Sent: n.Sent, Deliv: n.Delivered,
				Read: n.Read, Failed: n.Failed, Outbox: n.Outbox}
			if n.Cost != (conversation.CostCounts{}) {
				d.Cost = &n.Cost
			}
			if n.CostEstimated != (conversation.CostCounts{}) {
				d.CostEst = &n.CostEstimated
			}
			docs = append(docs, d)
		}
	}
	if facts := factDocs(contact, tallies); len(facts) > 0 {
		errs, err := s.insertFacts.do(ctx, facts)
		if err == nil {
			for _, e := range errs {
				if e != nil && !mongo.IsDuplicateKeyError(e) {
					err = e
				}
			}
		}
		if err != nil {
			return fmt.Errorf("mongodb: counting the facts of contact %s: %w", contact, err)
		}
	}
	if len(docs) == 0 {
		return nil
	}
	// Concurrent drains share one insert (store.insertMany).
	errs, err := s.insertTally.do(ctx, docs)
	if err == nil {
		for _, e := range errs {
			if e != nil && !mongo.IsDuplicateKeyError(e) {
				err = e
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mongodb: counting the tallies of contact %s: %w", contact, err)
	}
	return nil
}

// Counts implements store.Campaigns: the campaign's tallies summed (and
// the per-instance counts versions before 3 wrote, which have the same
// fields). The sum is taken here, not in a $group: FerretDB computes only
// the first of several accumulators.
func (s *Store) Counts(ctx context.Context, id string) (conversation.CampaignCounts, error) {
	var sum conversation.CampaignCounts
	cur, err := s.counts.Find(ctx, bson.D{{Key: "campaign", Value: id}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "at", Value: 0}, {Key: "campaign", Value: 0}, {Key: "instance", Value: 0}}))
	if err != nil {
		return sum, fmt.Errorf("mongodb: reading campaign %s's counts: %w", id, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var n conversation.CampaignCounts
		if err := cur.Decode(&n); err != nil {
			return sum, fmt.Errorf("mongodb: reading campaign %s's counts: %w", id, err)
		}
		sum.Add(n)
	}
	if err := cur.Err(); err != nil {
		return sum, fmt.Errorf("mongodb: reading campaign %s's counts: %w", id, err)
	}
	return sum, nil
}
