package conversation

import (
	"context"
	"strings"

	"github.com/flowbot/flowbot/flows"
)

// Charges is what a contact's messages cost as WhatsApp charges them: a
// message is estimated (the bot's pricing, flows.Pricing) when WhatsApp
// accepts it, and confirmed when a delivered or read status brings
// WhatsApp's pricing for it; a failed one is never charged. A billable
// status for a message the record does not know (sent by a process killed
// before it recorded the send) is confirmed all the same, as Unattributed:
// WhatsApp bills it.
type Charges struct {
	Confirmed CostCounts `json:"confirmed" bson:"confirmed"`
	Estimated CostCounts `json:"estimated" bson:"estimated"`
	// Unattributed counts the confirmed charges for messages the record
	// does not know.
	Unattributed int `json:"unattributed,omitempty" bson:"unattributed,omitempty"`
}

// What became of a delivery's estimated cost (Delivery.Charge).
const (
	ChargeEstimated = ""
	ChargeConfirmed = "confirmed"
	ChargeFree      = "free"
	ChargeNone      = "none"
)

// Billing is one change to the charges: an estimate added or settled, a
// charge confirmed. It is kept in the record (Charges), in the campaign's
// tally, and told to the Observer.
type Billing struct {
	// Estimated is added to the estimate (negative: settled).
	Estimated CostCounts
	// Confirmed is added to the confirmed cost.
	Confirmed CostCounts
}

func (b Billing) zero() bool { return b == Billing{} }

// bill applies a change to the record and to the message's campaign.
func (k *Keeper) bill(st *Record, campaign, flow string, b Billing) {
	if b.zero() {
		return
	}
	st.Charges.Estimated.Add(b.Estimated)
	st.Charges.Confirmed.Add(b.Confirmed)
	st.tally(campaign, CampaignCounts{Cost: b.Confirmed, CostEstimated: b.Estimated}, k.Now())
	st.billFacts(flow, k.Number, b, k.Now())
	if k.Observer != nil {
		k.Observer.Billed(b)
	}
}

// estimate is what a message WhatsApp accepted adds: its cost, estimated.
func estimate(cat flows.Category, cost float64) Billing {
	var b Billing
	*b.Estimated.Of(cat) = cost
	return b
}

// settle is what a delivery's status does to its charge: a failure
// settles the estimate at nothing; a delivered or read status with
// WhatsApp's pricing confirms it, at the bot's rate for the category
// WhatsApp names (its own estimate when the category is the same), or at
// nothing when WhatsApp says it is not billable (a free customer service
// or entry point message). A later status's pricing reconciles a charge
// confirmed before. A status without pricing leaves it estimated.
func (k *Keeper) settle(ctx context.Context, st *Record, d *Delivery, su *StatusUpdate) Billing {
	var b Billing
	switch {
	case d.Charge == ChargeNone:
		return b
	case su.Status == "failed":
		if d.Charge == ChargeEstimated {
			*b.Estimated.Of(d.Category) -= d.Cost
			d.Charge = ChargeNone
		}
		return b
	case su.Pricing == nil || !su.Pricing.Priced() || statusRank[su.Status] < statusRank["delivered"]:
		return b
	}
	cat, amount := k.priced(ctx, st, su.Pricing, d.Category, d.Cost)
	if d.Charge == ChargeEstimated {
		*b.Estimated.Of(d.Category) -= d.Cost
	} else {
		*b.Confirmed.Of(d.Category) -= d.Charged // reconciled: the earlier confirmation is undone
	}
	*b.Confirmed.Of(cat) += amount
	d.Category, d.Charged, d.Charge = cat, amount, ChargeConfirmed
	if amount == 0 && !su.Pricing.IsBillable() {
		d.Charge = ChargeFree
	}
	return b
}

// unattributed confirms a billable status's charge for a message the
// record does not know, at the bot's rate for its category.
func (k *Keeper) unattributed(ctx context.Context, st *Record, su *StatusUpdate) Billing {
	var b Billing
	if su.Pricing == nil || !su.Pricing.Priced() || !su.Pricing.IsBillable() || su.Status == "failed" {
		return b
	}
	cat, amount := k.priced(ctx, st, su.Pricing, "", 0)
	*b.Confirmed.Of(cat) = amount
	if amount > 0 {
		st.Charges.Unattributed++
	}
	return b
}

// priced is what WhatsApp's pricing charges for a message: its category
// and the amount at the bot's rates. estimate, the bot's own for the
// message, stands when the category is the one it was estimated in and
// is not 0 (it knows the conversation model's free messages).
func (k *Keeper) priced(ctx context.Context, st *Record, p *Pricing, estCat flows.Category, estimate float64) (flows.Category, float64) {
	cat := pricingCategory(p.Category, estCat)
	if !p.IsBillable() {
		return cat, 0
	}
	if cat == estCat && (estimate > 0 || strings.EqualFold(p.Model, "CBP")) {
		return cat, estimate
	}
	e, _ := k.Engine(ctx, st)
	if e == nil {
		return cat, 0
	}
	return cat, e.Bot().Settings.Pricing.Rates[cat]
}

// pricingCategory reads the category of a status's pricing:
// authentication_international is authentication, marketing_lite
// marketing, referral_conversion (a free entry point) service; an
// unknown or absent one is the estimate's.
func pricingCategory(c string, estimated flows.Category) flows.Category {
	switch strings.ToLower(c) {
	case "marketing", "marketing_lite":
		return flows.Marketing
	case "utility":
		return flows.Utility
	case "authentication", "authentication_international":
		return flows.Authentication
	case "service", "referral_conversion":
		return flows.Service
	}
	if estimated == "" {
		return flows.Service
	}
	return estimated
}

// Priced reports whether the status carried WhatsApp's pricing object
// (not only a conversation).
func (p *Pricing) Priced() bool { return p.Model != "" || p.Type != "" || p.Category != "" }

// IsBillable reports whether WhatsApp charges the message: its pricing type
// is regular (billable, to be deprecated, says so where there is no type).
func (p *Pricing) IsBillable() bool {
	if p.Type != "" {
		return strings.EqualFold(p.Type, "regular")
	}
	return p.Billable
}
