// Package ingest is the one way a WhatsApp update enters a contact's
// conversation: it turns a parsed webhook (whatsapp.Parse) into the
// conversation items (conversation.Item) that Keeper.Apply applies:
// messages, delivery statuses, preferences. flowbot serve ingests every
// webhook through it, and the dry run (flowbot run, flowbot test, the
// playground) ingests the contact's messages through it too, from the
// webhook WhatsApp would send for them (Message), so that a message reads
// the same everywhere.
package ingest

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/whatsapp"
)

// MaxContactID bounds a contact id: longer than any WhatsApp id, an
// update is dropped.
const MaxContactID = 256

// Options say whose updates are taken and who hears what is dropped.
type Options struct {
	// Number is the business number served; "" takes every number's.
	Number string
	// Log hears what is dropped (nil: nothing).
	Log *slog.Logger
	// Refused counts an update dropped, by reason (group, long_id,
	// unknown_number); Clamped a message timestamp not believed, by why.
	Refused func(reason string)
	Clamped func(why string)
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Refused == nil {
		o.Refused = func(string) {}
	}
	if o.Clamped == nil {
		o.Clamped = func(string) {}
	}
}

// ours reports whether an update for a business number is this bot's:
// when bound to a number, an update for another number is logged, counted
// and dropped (the webhook is still answered 200: it was delivered to the
// right place, for nobody here).
func (o *Options) ours(number string) bool {
	if o.Number == "" || number == "" || number == o.Number {
		return true
	}
	o.Log.Warn("webhook update for a number this server does not serve: dropped", "phone_number_id", flows.Truncate(number, 64), "serves", o.Number)
	o.Refused("unknown_number")
	return false
}

// Items turns a parsed notification into conversation items, logging and
// counting (Options.Refused) what cannot be attributed to a contact.
func Items(u *whatsapp.Update, now time.Time, o Options) []conversation.Item {
	o.defaults()
	var items []conversation.Item
	for _, e := range u.Errors {
		o.Log.Warn("WhatsApp reported an error in a webhook", "code", e.Code, "error", e.String())
	}
	for _, m := range u.Messages {
		if !o.ours(m.PhoneNumberID) {
			continue
		}
		if m.Contact == "" {
			o.Log.Warn("webhook message without a sender: recorded here and dropped", "key", m.Key, "type", m.Inbound.Type)
			continue
		}
		if m.GroupID != "" {
			// Written in a group: never answered privately as if the person
			// had written one to one.
			o.Log.Info("a group message: flowbot runs one-to-one conversations, and does not answer it", "group", flows.Truncate(m.GroupID, 64), "contact", flows.Truncate(m.Contact, 64), "type", m.Inbound.Type)
			o.Refused("group")
			continue
		}
		for _, e := range m.Errors {
			o.Log.Info("message arrived with an error", "contact", m.Contact, "key", m.Key, "error", e.String())
		}
		if len(m.Contact) > MaxContactID {
			o.Log.Warn("webhook message from a sender id longer than any WhatsApp id: dropped", "bytes", len(m.Contact), "sender", m.Contact[:64]+"...", "key", m.Key)
			o.Refused("long_id")
			continue
		}
		if m.Clock != "" && m.Clock != "missing" {
			o.Log.Warn("message timestamp not believed: it counts as received now", "contact", m.Contact, "key", m.Key, "why", m.Clock, "whatsapp_timestamp", m.Order, "received", now)
			o.Clamped(m.Clock)
		}
		in := m.Inbound
		items = append(items, conversation.Item{Key: m.Key, Contact: m.Contact, Kind: conversation.ItemMessage, Timestamp: m.Order, Received: now, Message: &in})
	}
	for _, p := range u.Preferences {
		if !o.ours(p.PhoneNumberID) {
			continue
		}
		if p.Value == "signup" {
			// The contact signed up for marketing messages: as a resume.
			p.Value = "resume"
		}
		if p.Category != "marketing_messages" || (p.Value != "stop" && p.Value != "resume") {
			o.Log.Info("a contact's preference flowbot does not follow", "category", p.Category, "value", p.Value)
			continue
		}
		if p.Contact == "" || len(p.Contact) > MaxContactID {
			o.Log.Warn("user_preferences without a usable contact id: dropped", "bytes", len(p.Contact))
			continue
		}
		// Keyed by contact, time and value: a redelivery is a duplicate.
		key := "pref:" + p.Contact + ":" + strconv.FormatInt(p.Timestamp.Unix(), 10) + ":" + p.Value
		items = append(items, conversation.Item{Key: key, Contact: p.Contact, Kind: conversation.ItemCommand, Timestamp: p.Timestamp, Received: now,
			Command: &conversation.Command{Kind: conversation.CommandPreference, Preference: p.Value}})
	}
	for _, st := range u.Statuses {
		if !o.ours(st.PhoneNumberID) {
			continue
		}
		if st.Contact == "" || st.ID == "" {
			o.Log.Warn("webhook status without a recipient or an id: dropped", "status", st.Status)
			continue
		}
		if st.Group {
			o.Log.Info("a status of a group message: not a contact's conversation", "status", st.Status)
			o.Refused("group")
			continue
		}
		if len(st.Contact) > MaxContactID || len(st.Key) > 2*MaxContactID {
			o.Log.Warn("webhook status for a recipient id longer than any WhatsApp id: dropped", "bytes", len(st.Contact), "recipient", st.Contact[:64]+"...")
			o.Refused("long_id")
			continue
		}
		su := &conversation.StatusUpdate{WAMID: st.ID, Outbound: st.Outbound, Status: st.Status, Timestamp: st.Timestamp}
		if len(st.Errors) > 0 {
			su.ErrorCode, su.Error = st.Errors[0].Code, st.Errors[0].String()
		}
		if st.Pricing != nil || st.Conversation != nil {
			p := &conversation.Pricing{}
			if pr := st.Pricing; pr != nil {
				su.Category = pr.Category
				p.Category, p.Type, p.Model, p.Billable = pr.Category, pr.Type, pr.PricingModel, pr.Billable
			}
			if cv := st.Conversation; cv != nil {
				p.Conversation, p.Origin, p.ConversationTo = cv.ID, cv.Origin, cv.Expires
			}
			su.Pricing = p
		}
		su.WindowClosed = su.ErrorCode != 0 && whatsapp.Classify(su.ErrorCode, 0) == whatsapp.WindowClosed
		items = append(items, conversation.Item{Key: st.Key, Contact: st.Contact, Kind: conversation.ItemStatus, Timestamp: st.Timestamp, Received: now, Status: su})
	}
	return items
}
