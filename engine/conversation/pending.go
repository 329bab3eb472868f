package conversation

import (
	"time"

	"github.com/flowbot/flowbot/engine"
)

// Pending is a message in the record's outbox: the message the engine
// made, and what its delivery adds to it, which the engine knows nothing
// of: the campaign whose start committed it, and the claim of the
// instance sending it. It is stored as one object, the message's fields
// beside the delivery's.
type Pending struct {
	engine.Outbound `bson:",inline"`
	// Campaign names the campaign whose start committed the message.
	Campaign string `json:"campaign,omitempty"`
	// ClaimedBy is the instance sending the message, since ClaimedAt:
	// another instance leaves it alone until the claim expires at
	// ClaimUntil (the claimer died), so that a message goes out once.
	ClaimedBy  string    `json:"claimed_by,omitempty"`
	ClaimedAt  time.Time `json:"claimed_at,omitzero"`
	ClaimUntil time.Time `json:"claim_until,omitzero"`
}
