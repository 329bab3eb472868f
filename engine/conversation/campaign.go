package conversation

import (
	"context"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
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

// Tally is what applying updates did to campaigns, by campaign id: the
// host adds it to the campaigns' counts once the record is committed.
type Tally map[string]CampaignCounts

func (t *Tally) add(campaign string, d CampaignCounts) {
	if campaign == "" {
		return
	}
	if *t == nil {
		*t = Tally{}
	}
	c := (*t)[campaign]
	c.Add(d)
	(*t)[campaign] = c
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

// SendTally is what a send's result adds to its campaign's counts: a
// message WhatsApp accepted is sent, with its cost; one refused failed.
// campaign is "" for a message of no campaign.
func SendTally(r SendResult) (campaign string, d CampaignCounts) {
	o := r.Outbound
	if o.Campaign == "" {
		return "", d
	}
	if r.Class != Sent {
		return o.Campaign, failure(r.Code)
	}
	d.Sent = 1
	switch o.Category {
	case flows.Marketing:
		d.Cost.Marketing = o.Cost
	case flows.Utility:
		d.Cost.Utility = o.Cost
	case flows.Authentication:
		d.Cost.Authentication = o.Cost
	default:
		d.Cost.Service = o.Cost
	}
	return o.Campaign, d
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
func (k *Keeper) startCampaign(ctx context.Context, st *Record, cmd *Command, tally *Tally) (skipped string, err error) {
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
			tally.add(cmd.Campaign, CampaignCounts{Started: 1})
			return "", nil
		}
	}
	switch skipped {
	case SkippedOptedOut:
		tally.add(cmd.Campaign, CampaignCounts{OptedOut: 1})
	case SkippedBusy:
		tally.add(cmd.Campaign, CampaignCounts{Busy: 1})
	}
	return skipped, nil
}
