package store

import (
	"context"
	"fmt"
	"github.com/flowbot/flowbot/engine/conversation"
	"time"
)

// CampaignState is where a campaign is.
type CampaignState string

const (
	CampaignRunning   CampaignState = "running"
	CampaignPaused    CampaignState = "paused"
	CampaignDone      CampaignState = "done"
	CampaignCancelled CampaignState = "cancelled"
)

// AudiencePage is how many contacts one stored page of an audience
// holds: 100,000 contacts are 100 documents, each far below MongoDB's
// 16 MB.
const AudiencePage = 1000

// AudienceContact is one contact of a campaign's audience: who to start
// the flow for, with the flow's variables (already converted to their
// types).
type AudienceContact struct {
	ID       string         `json:"id" bson:"id"`
	Name     string         `json:"name,omitempty" bson:"name,omitempty"`
	Language string         `json:"language,omitempty" bson:"language,omitempty"`
	Vars     map[string]any `json:"vars,omitempty" bson:"vars,omitempty"`
}

// Campaign is one flow started for an audience, paced (INTERFACES.md
// version 2, section 4). What changes while it runs is kept apart: the
// batches handed out (CampaignBatch) and the counts (drained from the
// contacts' records, conversation.TallyOut), so that no write contends
// with another on one document.
type Campaign struct {
	ID   string `json:"id" bson:"_id"`
	Name string `json:"name" bson:"name"`
	Flow string `json:"flow" bson:"flow"`
	// Rate is the starts per second asked for; DailyLimit caps the
	// starts in any 24 hours (0: no cap).
	Rate       int `json:"rate" bson:"rate"`
	DailyLimit int `json:"daily_limit" bson:"daily_limit"`
	// Batch is how many contacts one batch hands out (fixed at creation:
	// batch n is contacts n*Batch up to (n+1)*Batch).
	Batch int `json:"batch" bson:"batch"`
	// Total is the accepted contacts; Rejected the rows refused.
	Total    int `json:"total" bson:"total"`
	Rejected int `json:"rejected" bson:"rejected"`
	// RejectedRows are the first rows refused, with why.
	RejectedRows []RejectedRow `json:"rejected_rows,omitempty" bson:"rejected_rows,omitempty"`
	// Fingerprint names the request that made it (name, flow, rate,
	// audience): the same request again is answered with this campaign.
	Fingerprint string        `json:"-" bson:"fingerprint"`
	State       CampaignState `json:"state" bson:"state"`
	// Factor is the share of Rate the campaign runs at: WhatsApp's
	// throughput errors halve it, and it climbs back while none come.
	Factor   float64   `json:"factor" bson:"factor"`
	SlowedAt time.Time `json:"slowed_at,omitzero" bson:"slowed_at,omitempty"`
	// HandedOut is when the last batch was handed out.
	HandedOut  time.Time `json:"handed_out_at,omitzero" bson:"handed_out,omitempty"`
	CreatedAt  time.Time `json:"created_at" bson:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero" bson:"finished_at,omitempty"`
	// Announced: its campaign.finished is queued.
	Announced bool `json:"-" bson:"announced,omitempty"`
}

// RejectedRow is a row of an audience that was refused: its number (the
// header is row 1 of a CSV file; the first contact is row 1 of a JSON
// list) and why.
type RejectedRow struct {
	Row   int    `json:"row" bson:"row"`
	Error string `json:"error" bson:"error"`
}

// Batches is how many batches the campaign hands out.
func (c *Campaign) Batches() int { return (c.Total + c.Batch - 1) / c.Batch }

// Range is batch n's contacts: indexes from, up to to.
func (c *Campaign) Range(n int) (from, to int) {
	return n * c.Batch, min((n+1)*c.Batch, c.Total)
}

// CampaignBatch is a batch of a campaign's contacts handed out to an
// instance to start, each at its slot: the batch's contacts evenly
// spread from Start to End. A batch is claimed by inserting it, so that
// of any instances one gets it; its successor starts where it ends, so
// that the pace holds across every instance.
type CampaignBatch struct {
	Campaign string    `bson:"campaign"`
	N        int       `bson:"n"`
	Start    time.Time `bson:"start"`
	End      time.Time `bson:"end"`
	// By is the instance starting it, until Until: when it dies first,
	// another instance takes the batch over (a start already queued is
	// not queued again).
	By    string    `bson:"by"`
	Until time.Time `bson:"until"`
	Done  bool      `bson:"done"`
}

// Pace is how fast a campaign runs: Factor is the share of its rate, set
// at SlowedAt.
type Pace struct {
	Factor   float64
	SlowedAt time.Time
}

// PaceFactor is the share of its rate the campaign runs at now: 1 for
// one never slowed down.
func (c *Campaign) PaceFactor() float64 {
	if c.Factor <= 0 {
		return 1
	}
	return c.Factor
}

// Pace is the campaign's pace.
func (c *Campaign) Pace() Pace { return Pace{Factor: c.Factor, SlowedAt: c.SlowedAt} }

// Same reports whether two paces are one, to the millisecond a store
// keeps.
func (p Pace) Same(q Pace) bool {
	return p.Factor == q.Factor && p.SlowedAt.Truncate(time.Millisecond).Equal(q.SlowedAt.Truncate(time.Millisecond))
}

// Holds reports whether a stored batch is still as was: the same holder
// and lease (to the millisecond a store keeps), not done.
func (b *CampaignBatch) Holds(was CampaignBatch) bool {
	return !b.Done && b.By == was.By && b.Until.Truncate(time.Millisecond).Equal(was.Until.Truncate(time.Millisecond))
}

// CampaignUpdate is a change of a campaign: the fields set.
type CampaignUpdate struct {
	State      CampaignState
	HandedOut  time.Time
	FinishedAt time.Time
	Announced  bool
}

// ErrWrongState: the campaign is not in a state the change applies to.
type ErrWrongState struct{ State CampaignState }

func (e *ErrWrongState) Error() string { return fmt.Sprintf("the campaign is %s", e.State) }

// Campaigns keeps campaigns, their audiences (in pages), the batches
// handed out and the counts.
type Campaigns interface {
	// CreateCampaign stores a campaign whose audience pages are stored;
	// ErrConflict when the id is taken.
	CreateCampaign(ctx context.Context, c Campaign) error
	// PutAudience stores one page of a campaign's audience (idempotent).
	PutAudience(ctx context.Context, campaign string, page int, contacts []AudienceContact) error
	// Audience reads one page; ErrNotFound when it is not stored.
	Audience(ctx context.Context, campaign string, page int) ([]AudienceContact, error)
	// Campaign reads a campaign, or ErrNotFound.
	Campaign(ctx context.Context, id string) (*Campaign, error)
	// ListCampaigns lists the campaigns, newest first.
	ListCampaigns(ctx context.Context) ([]Campaign, error)
	// UpdateCampaign applies u's non-zero fields when the campaign is in
	// one of the states from (any, when from is empty); else it returns
	// *ErrWrongState. ErrNotFound for an unknown id.
	UpdateCampaign(ctx context.Context, id string, from []CampaignState, u CampaignUpdate) error
	// ClaimBatch stores a batch unless that batch is stored:
	// ErrConflict then.
	ClaimBatch(ctx context.Context, b CampaignBatch) error
	// Batch reads batch n, or ErrNotFound.
	Batch(ctx context.Context, campaign string, n int) (*CampaignBatch, error)
	// LastBatch reads the highest batch claimed, or ErrNotFound.
	LastBatch(ctx context.Context, campaign string) (*CampaignBatch, error)
	// OpenBatches lists the batches not done.
	OpenBatches(ctx context.Context, campaign string) ([]CampaignBatch, error)
	// UpdateBatch records a batch's new holder and lease, or that it is
	// done, when the stored batch is still as was (the same holder, the
	// same lease, not done): else ErrConflict, and nothing is written.
	// ErrNotFound for a batch never claimed.
	UpdateBatch(ctx context.Context, was, b CampaignBatch) error
	// SetPace sets the campaign's pace when it is still was (the one
	// read): else ErrConflict, and nothing is written.
	SetPace(ctx context.Context, id string, was, to Pace) error
	// DrainTallies adds a contact's committed tallies to their campaigns'
	// counts, each under the key (campaign, contact, version) at most
	// once, and their facts to the analytics (Facts), each version's under
	// FactKey at most once: a key drained before is skipped, so that a
	// tally drained again after a crash or a retry counts once.
	DrainTallies(ctx context.Context, contact string, tallies []conversation.TallyOut) error
	// Counts sums the campaign's drained tallies.
	Counts(ctx context.Context, campaign string) (conversation.CampaignCounts, error)
}

// TallyKey is the key a tally is drained under: the campaign, the
// contact and the version of the contact's record that made it.
func TallyKey(campaign, contact string, version int64) string {
	return fmt.Sprintf("%s/%s#%d", campaign, contact, version)
}
