package conversation

import (
	"time"

	"github.com/flowbot/flowbot/actions"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// What comes into a contact's conversation, queued in the contact's
// queue (the store's inbox) until a worker applies it to the record:
// inbound messages, delivery statuses, and commands (API starts and
// releases, agents' messages, campaigns' starts, marketing preferences).

// ItemKind is what an inbox item carries.
type ItemKind string

const (
	// ItemMessage is a message from a contact.
	ItemMessage ItemKind = "message"
	// ItemStatus is a delivery status of a message the bot sent.
	ItemStatus ItemKind = "status"
	// ItemCommand is an API command (a flow start, a release): applied in
	// order with the contact's webhook updates, once.
	ItemCommand ItemKind = "command"
)

// Command is an API command for a contact.
type Command struct {
	Kind CommandKind `json:"kind" bson:"kind"`
	Flow string      `json:"flow,omitempty" bson:"flow,omitempty"`
	// Step starts the flow at this step instead of its start (dry runs'
	// and tests' `at:`).
	Step     string         `json:"step,omitempty" bson:"step,omitempty"`
	Vars     map[string]any `json:"vars,omitempty" bson:"vars,omitempty"`
	Name     string         `json:"name,omitempty" bson:"name,omitempty"`
	Language string         `json:"language,omitempty" bson:"language,omitempty"`
	// Preference is a CommandPreference's value: stop or resume.
	Preference string `json:"preference,omitempty" bson:"preference,omitempty"`
	// Campaign names the campaign of a start: the contact is skipped
	// (not started) when opted out, in a handoff or in the middle of a
	// flow, and the messages of the start are counted as the campaign's.
	Campaign string `json:"campaign,omitempty" bson:"campaign,omitempty"`
	// Message is a CommandAgent's message; Forced says the agent wrote
	// outside a handoff on purpose ("force": true), as recorded.
	Message *actions.Message `json:"message,omitempty" bson:"message,omitempty"`
	Forced  bool             `json:"forced,omitempty" bson:"forced,omitempty"`
}

// CommandKind is what a command does.
type CommandKind string

const (
	// CommandStart starts a business-initiated flow.
	CommandStart CommandKind = "start"
	// CommandRelease ends a handoff.
	CommandRelease CommandKind = "release"
	// CommandPreference records that the contact stopped or resumed
	// marketing messages in WhatsApp (a user_preferences webhook).
	CommandPreference CommandKind = "preference"
	// CommandAgent sends an agent's message, in order with the bot's.
	CommandAgent CommandKind = "agent"
)

// Item is one webhook update, durably queued until a worker has applied
// it to the contact's state.
type Item struct {
	// Key is unique: the WhatsApp message id,
	// "status:<wamid>:<status>", or "cmd:<random>" for a command. A second item with the same key is a
	// duplicate delivery and is dropped.
	Key     string   `json:"key" bson:"_id"`
	Contact string   `json:"contact" bson:"contact"`
	Kind    ItemKind `json:"kind" bson:"kind"`
	// Timestamp is WhatsApp's; items of a contact are applied in
	// timestamp order, then in arrival order.
	Timestamp time.Time       `json:"timestamp" bson:"timestamp"`
	Seq       int64           `json:"seq" bson:"seq"`
	Received  time.Time       `json:"received" bson:"received"`
	Message   *engine.Inbound `json:"message,omitempty" bson:"message,omitempty"`
	Status    *StatusUpdate   `json:"status,omitempty" bson:"status,omitempty"`
	Command   *Command        `json:"command,omitempty" bson:"command,omitempty"`
	// ForceFlow starts this flow, with ForceVars, on a message to a
	// contact in no flow: dry runs' and tests' --flow (webhooks never set
	// it).
	ForceFlow string         `json:"force_flow,omitempty" bson:"force_flow,omitempty"`
	ForceVars map[string]any `json:"force_vars,omitempty" bson:"force_vars,omitempty"`
}

// StatusUpdate is a delivery status from WhatsApp.
type StatusUpdate struct {
	WAMID     string    `json:"wamid" bson:"wamid"`
	Outbound  string    `json:"outbound,omitempty" bson:"outbound,omitempty"`
	Status    string    `json:"status" bson:"status"`
	Timestamp time.Time `json:"timestamp" bson:"timestamp"`
	ErrorCode int       `json:"error_code,omitempty" bson:"error_code,omitempty"`
	Error     string    `json:"error,omitempty" bson:"error,omitempty"`
	Category  string    `json:"category,omitempty" bson:"category,omitempty"`
	// Pricing is what WhatsApp charged, from the status's pricing and
	// conversation objects.
	Pricing *Pricing `json:"pricing,omitempty" bson:"pricing,omitempty"`
	// WindowClosed: the failure's code means the window was closed.
	WindowClosed bool `json:"window_closed,omitempty" bson:"window_closed,omitempty"`
}

// CampaignCounts is what a campaign did: its contacts started or
// skipped (by reason), its messages' delivery statuses, and their cost.
type CampaignCounts struct {
	Started   int `json:"started" bson:"started"`
	OptedOut  int `json:"opted_out" bson:"opted_out"`
	Busy      int `json:"busy" bson:"busy"`
	Limit     int `json:"limit" bson:"limit"`
	Sent      int `json:"sent" bson:"sent"`
	Delivered int `json:"delivered" bson:"delivered"`
	Read      int `json:"read" bson:"read"`
	Failed    int `json:"failed" bson:"failed"`
	// Cost is what WhatsApp's pricing confirmed, on delivery;
	// CostEstimated what was accepted and not yet confirmed (it goes
	// when the status's pricing confirms it, or the message fails).
	Cost          CostCounts `json:"cost" bson:"cost"`
	CostEstimated CostCounts `json:"cost_estimated" bson:"cost_estimated"`
	// Outbox is the campaign's messages committed and not yet handed to
	// WhatsApp (a start adds its messages, each leaving takes one off):
	// a campaign is done when every contact is counted and this is 0.
	Outbox int `json:"outbox" bson:"outbox"`
}

// CostCounts is a cost by category.
type CostCounts struct {
	Marketing      float64 `json:"marketing" bson:"marketing"`
	Utility        float64 `json:"utility" bson:"utility"`
	Authentication float64 `json:"authentication" bson:"authentication"`
	Service        float64 `json:"service" bson:"service"`
}

// Of is a category's amount.
func (c *CostCounts) Of(cat flows.Category) *float64 {
	switch cat {
	case flows.Marketing:
		return &c.Marketing
	case flows.Utility:
		return &c.Utility
	case flows.Authentication:
		return &c.Authentication
	}
	return &c.Service
}

// Add adds d to c.
func (c *CostCounts) Add(d CostCounts) {
	c.Marketing += d.Marketing
	c.Utility += d.Utility
	c.Authentication += d.Authentication
	c.Service += d.Service
}

// Total sums the categories.
func (c CostCounts) Total() float64 { return c.Marketing + c.Utility + c.Authentication + c.Service }

// Add adds d to c.
func (c *CampaignCounts) Add(d CampaignCounts) {
	c.Started += d.Started
	c.OptedOut += d.OptedOut
	c.Busy += d.Busy
	c.Limit += d.Limit
	c.Sent += d.Sent
	c.Delivered += d.Delivered
	c.Read += d.Read
	c.Failed += d.Failed
	c.Outbox += d.Outbox
	c.Cost.Add(d.Cost)
	c.CostEstimated.Add(d.CostEstimated)
}

// Skipped is the contacts skipped, for every reason.
func (c *CampaignCounts) Skipped() int { return c.OptedOut + c.Busy + c.Limit }
