package store

import (
	"context"
	"time"
)

// AccountState is what the account's latest event of one kind said: a
// business number's quality and messaging limit (Key "number:" and the
// display number), the account's restriction (Key KeyRestriction) or its
// pricing tier (KeyPricingTier).
type AccountState struct {
	Key string `json:"key" bson:"_id"`
	// Event is the event's name: FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE
	// ... for a number; ACCOUNT_RESTRICTION; VOLUME_BASED_PRICING_TIER_UPDATE.
	Event string `json:"event" bson:"event"`
	// Limit and OldLimit are a number's messaging limit
	// (max_daily_conversations_per_business) and the one before.
	Limit    string `json:"limit,omitempty" bson:"limit,omitempty"`
	OldLimit string `json:"old_limit,omitempty" bson:"old_limit,omitempty"`
	// Restrictions are the account's restrictions, each with its expiry.
	Restrictions []Restriction `json:"restrictions,omitempty" bson:"restrictions,omitempty"`
	// Detail is the rest, as WhatsApp wrote it (a pricing tier).
	Detail string `json:"detail,omitempty" bson:"detail,omitempty"`
	// UpdatedAt is when the event happened.
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
}

// Restriction is one of the account's restrictions:
// RESTRICTED_BIZ_INITIATED_MESSAGING (no business-initiated messages),
// RESTRICTED_ADD_PHONE_NUMBER_ACTION, RESTRICTED_CUSTOMER_INITIATED_MESSAGING.
type Restriction struct {
	Type    string    `json:"type" bson:"type"`
	Expires time.Time `json:"expires" bson:"expires"`
}

// The keys of the account's states besides numbers'.
const (
	KeyRestriction = "restriction"
	KeyPricingTier = "pricing_tier"
)

// NumberKey is the key of a business number's state, by its display
// number (the quality events name no phone number id).
func NumberKey(display string) string { return "number:" + display }

// Account keeps the account's states, shared by the instances.
type Account interface {
	// UpdateAccount records a state, unless the stored one of its key
	// came from an event as recent or more (it reports false then, and
	// writes nothing).
	UpdateAccount(ctx context.Context, a AccountState) (bool, error)
	// AccountStates lists every state.
	AccountStates(ctx context.Context) ([]AccountState, error)
}
