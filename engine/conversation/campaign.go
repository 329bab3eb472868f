package conversation

import (
	"context"
	"time"

	"github.com/flowbot/flowbot/engine"
)

// Why a campaign's start skipped a contact (Outcome.Refused).
const (
	SkippedOptedOut = "opted_out"
	SkippedBusy     = "busy"
)

// WhatsApp's codes that count a campaign's message as skipped rather than
// failed: the contact is over WhatsApp's per-user marketing limit
// (131049), or stopped marketing messages (131050).
const (
	codePerUserLimit     = 131049
	codeMarketingStopped = 131050
)

// TallyOut is what one version of the record did to campaigns: committed
// with the record that made it, then drained by the host into the
// campaigns' counts under the key (campaign, contact, Version), which a
// store takes once, so that neither a crash nor a retry loses or doubles
// a count. It leaves the record with the record's next write.
type TallyOut struct {
	// Version is the record's version that made it.
	Version int64 `json:"version" bson:"version"`
	// At is when it was made.
	At        time.Time       `json:"at" bson:"at"`
	Campaigns []CampaignTally `json:"campaigns" bson:"campaigns"`
	// Flows are the version's facts, per flow (the analytics).
	Flows []FlowFacts `json:"flows,omitempty" bson:"flows,omitempty"`
}

// CampaignTally is what a version did to one campaign's counts.
type CampaignTally struct {
	Campaign       string `json:"campaign" bson:"campaign"`
	CampaignCounts `bson:",inline"`
}

// tally adds to a campaign's counts in the tally of the version this
// record's next write makes.
func (s *Record) tally(campaign string, d CampaignCounts, now time.Time) {
	if campaign == "" || d == (CampaignCounts{}) {
		return
	}
	t := s.nextTally(now)
	for i := range t.Campaigns {
		if t.Campaigns[i].Campaign == campaign {
			t.Campaigns[i].Add(d)
			return
		}
	}
	t.Campaigns = append(t.Campaigns, CampaignTally{Campaign: campaign, CampaignCounts: d})
}

// failure counts a campaign message WhatsApp did not deliver.
func failure(code int) CampaignCounts {
	switch code {
	case codePerUserLimit:
		return CampaignCounts{Limit: 1}
	case codeMarketingStopped:
		return CampaignCounts{OptedOut: 1}
	}
	return CampaignCounts{Failed: 1}
}

// sendTally is what a message leaving the outbox adds to its campaign's
// counts: one WhatsApp accepted is sent (its cost is estimated, Keeper.bill);
// one refused (or never attempted) failed, by its code.
func sendTally(sent bool, code int) CampaignCounts {
	if !sent {
		f := failure(code)
		f.Outbox = -1
		return f
	}
	return CampaignCounts{Sent: 1, Outbox: -1}
}

// statusTally is what a delivery status adds to its campaign's counts:
// each step up (delivered, read) once, whatever order the statuses came
// in; a failure by its code.
func statusTally(from, to string, code int) CampaignCounts {
	var d CampaignCounts
	if to == "failed" {
		if from != "failed" {
			return failure(code)
		}
		return d
	}
	if from == "failed" {
		return d
	}
	if statusRank[from] < statusRank["delivered"] && statusRank[to] >= statusRank["delivered"] {
		d.Delivered = 1
	}
	if statusRank[from] < statusRank["read"] && statusRank[to] >= statusRank["read"] {
		d.Read = 1
	}
	return d
}

// startCampaign applies a campaign's start: the contact is skipped when
// opted out (of marketing messages, for a campaign whose first template
// is a marketing one), in a handoff, or in the middle of a flow; else the
// flow starts, and its messages are the campaign's.
func (k *Keeper) startCampaign(ctx context.Context, st *Record, cmd *Command) (skipped string, err error) {
	switch {
	case st.Contact.OptedOut:
		skipped = SkippedOptedOut
	case st.Handoff != nil || st.Flow != "":
		skipped = SkippedBusy
	}
	if skipped == "" {
		trial := st.Clone()
		before := len(trial.Outbox)
		var res *engine.Result
		res, err = k.start(ctx, trial, cmd)
		if err != nil {
			return "", err
		}
		for _, e := range res.Events {
			if _, ok := e.(engine.TemplateNotSent); ok {
				skipped = SkippedOptedOut
			}
		}
		if skipped == "" {
			for i := before; i < len(trial.Outbox); i++ {
				trial.Outbox[i].Campaign = cmd.Campaign
			}
			*st = *trial
			st.tally(cmd.Campaign, CampaignCounts{Started: 1, Outbox: len(st.Outbox) - before}, k.Now())
			return "", nil
		}
	}
	switch skipped {
	case SkippedOptedOut:
		st.tally(cmd.Campaign, CampaignCounts{OptedOut: 1}, k.Now())
	case SkippedBusy:
		st.tally(cmd.Campaign, CampaignCounts{Busy: 1}, k.Now())
	}
	return skipped, nil
}
