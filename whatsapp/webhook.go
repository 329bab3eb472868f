// Package whatsapp is the WhatsApp Cloud API wire format: webhook
// signatures and parsing (every message type, statuses, batches) into
// engine events, and a client that sends text, media, interactive and
// template messages and classifies Cloud API errors. Types are written by
// hand: the surface is small and its fields change faster than libraries.
package whatsapp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/internal/jsonerr"
)

// SignatureHeader carries the HMAC-SHA256 of the raw body, keyed by the
// app secret.
const SignatureHeader = "X-Hub-Signature-256"

// VerifySignature checks an X-Hub-Signature-256 value ("sha256=<hex>")
// against the raw body, in constant time.
func VerifySignature(appSecret string, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok || appSecret == "" {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value for a body: for tests and for
// signing test webhooks by hand.
func Sign(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrNotNotification is a body that is not a WhatsApp notification.
var ErrNotNotification = errors.New("not a WhatsApp notification")

// Update is everything one notification carries, normalised.
type Update struct {
	Messages []Message
	Statuses []Status
	// Errors are errors WhatsApp reported outside any message or status
	// (entry.changes.value.errors).
	Errors []Error
	// Preferences are contacts' marketing preferences (user_preferences).
	Preferences []Preference
	// Account are the account's events: templates' status, category and
	// quality, and the number's quality.
	Account []AccountEvent
	// Skipped names the changes flowbot does not follow, for the log.
	Skipped []string
	// Display is the business numbers' display numbers, by
	// phone_number_id, as the metadata gives them.
	Display map[string]string
}

// Preference is a contact stopping or resuming marketing messages.
type Preference struct {
	// PhoneNumberID is the business number the preference was given to.
	PhoneNumberID string
	Contact       string
	Category      string // marketing_messages
	Value         string // stop or resume
	Detail        string
	Timestamp     time.Time
}

// The account's change fields flowbot follows besides messages.
const (
	FieldTemplateStatus   = "message_template_status_update"
	FieldTemplateCategory = "template_category_update"
	FieldTemplateQuality  = "message_template_quality_update"
	FieldUserPreferences  = "user_preferences"
	FieldNumberQuality    = "phone_number_quality_update"
	FieldAccountUpdate    = "account_update"
)

// AccountEvent is one of the account's events. Template events name the
// template and its language (as templates.yaml writes it: pt_BR); Status
// is the new status (APPROVED, PAUSED, DISABLED, REJECTED ...), Category
// the new category, Quality the new quality score (GREEN, YELLOW, RED);
// number quality events carry Number, Event (FLAGGED, UNFLAGGED,
// UPGRADE, DOWNGRADE ...) and Limit.
type AccountEvent struct {
	Field      string
	TemplateID string
	Template   string
	Language   string
	Status     string
	Reason     string
	Category   string
	Previous   string // the previous category or quality score
	Quality    string
	Number     string
	Event      string
	// Limit is the number's messaging limit now
	// (max_daily_conversations_per_business); OldLimit the one before,
	// for a limit's change.
	Limit    string
	OldLimit string
	// Restrictions are an ACCOUNT_RESTRICTION's restrictions (Event is
	// the account_update's event); Detail a pricing tier's update.
	Restrictions []Restriction
	Detail       string
	// At is when it happened: the entry's time, else when it was received.
	At time.Time
}

// changedID reads a system message that says the contact's id changed:
// user_changed_number gives the new number; user_changed_user_id the new
// business-scoped user id and the one before it. The message goes to the
// contact's new key, with PreviousID naming the old one, under which the
// conversation is found and continued (its state kept).
func (m *Message) changedID(typ, newWaID, newUserID, previousUserID string) {
	switch typ {
	case "user_changed_number":
		if newWaID == "" || newWaID == m.WaID || !isDigits(newWaID) {
			return
		}
		m.PreviousID, m.WaID, m.Contact = m.Contact, newWaID, newWaID
	case "user_changed_user_id":
		if newUserID == "" {
			newUserID = m.UserID
		}
		if newUserID == "" || newUserID == previousUserID {
			return
		}
		m.UserID = newUserID
		if m.WaID == "" { // known by the user id alone: the key moves
			m.PreviousID, m.Contact = previousUserID, newUserID
		}
	}
}

// Message is one inbound message.
type Message struct {
	// Key is the message id; a message without one gets a stable key
	// derived from its content, so that redeliveries still dedupe.
	Key string
	// Contact is the wa_id, or the business-scoped user id when the
	// webhook carries no wa_id.
	Contact       string
	WaID          string
	UserID        string
	Name          string
	Username      string // the profile's username, when the contact adopted one
	PhoneNumberID string
	Inbound       engine.Inbound
	// Clock says why Inbound.Timestamp is not WhatsApp's timestamp (see
	// ClampTime); "" when it is.
	Clock string
	// Order is WhatsApp's timestamp as sent (received when missing): a
	// contact's messages are applied in this order, even when a clock
	// ahead of ours makes Inbound.Timestamp the same for a burst.
	Order time.Time
	// PreviousID is the contact's key before a system message said it
	// changed (their old number, or old user id); "" otherwise.
	PreviousID string
	// ContextID is the id of the message replied to, if any.
	ContextID string
	// GroupID names the group a group message was written in: flowbot
	// runs one-to-one conversations, and never answers one privately.
	GroupID string
	Errors  []Error
}

// Status is a delivery status of a message the business sent.
type Status struct {
	Key         string // wamid + ":" + status: a status is delivered once per kind
	ID          string // the wamid
	Status      string // sent, delivered, read, failed, played
	Timestamp   time.Time
	RecipientID string
	// Contact is the contact the status is about: from our own id in
	// biz_opaque_callback_data when present, else the recipient.
	Contact string
	// Outbound is our outbound message id, echoed in
	// biz_opaque_callback_data.
	Outbound string
	// Group: the status of a message sent to a group.
	Group   bool
	Errors  []Error
	Pricing *Pricing
	// PhoneNumberID is the business number the status is about.
	PhoneNumberID string
	// Conversation is the status's conversation (WhatsApp sends it
	// inside a free entry point, and under the older pricing model).
	Conversation *Conversation
}

// Conversation is a status's conversation object.
type Conversation struct {
	ID      string    `json:"id"`
	Origin  string    `json:"origin"` // origin.type: service, utility, referral_conversion ...
	Expires time.Time `json:"expires,omitzero"`
}

// Pricing is a status's pricing information.
type Pricing struct {
	Billable     bool   `json:"billable"`
	PricingModel string `json:"pricing_model"`
	Type         string `json:"type"`
	Category     string `json:"category"`
}

// Error is a Cloud API error, in a webhook or an API response.
type Error struct {
	Code    int    `json:"code"`
	Title   string `json:"title,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"`
}

func (e Error) String() string {
	s := fmt.Sprintf("%d", e.Code)
	for _, p := range []string{e.Title, e.Message, e.Details} {
		if p != "" && !strings.Contains(s, p) {
			s += " " + p
		}
	}
	return s
}

// --- the wire shapes ---

type wireNotification struct {
	Object *string     `json:"object"`
	Entry  []wireEntry `json:"entry"`
}

type wireEntry struct {
	ID string `json:"id"`
	// Time is when the entry's changes happened (the account's events
	// carry it): they are applied in this order, not in arrival order.
	Time    flexTime     `json:"time"`
	Changes []wireChange `json:"changes"`
}

type wireChange struct {
	Field string    `json:"field"`
	Value wireValue `json:"value"`
}

type wireValue struct {
	Metadata struct {
		PhoneNumberID      string `json:"phone_number_id"`
		DisplayPhoneNumber string `json:"display_phone_number"`
	} `json:"metadata"`
	// The account's events (FieldTemplateStatus and the others).
	Event                string     `json:"event"`
	TemplateID           flexString `json:"message_template_id"`
	TemplateName         string     `json:"message_template_name"`
	TemplateLanguage     string     `json:"message_template_language"`
	Reason               *string    `json:"reason"`
	NewCategory          string     `json:"new_category"`
	PreviousCategory     string     `json:"previous_category"`
	NewQualityScore      string     `json:"new_quality_score"`
	PreviousQualityScore string     `json:"previous_quality_score"`
	DisplayPhoneNumber   flexString `json:"display_phone_number"`
	CurrentLimit         string     `json:"current_limit"`
	OldLimit             string     `json:"old_limit"`
	MaxDaily             flexString `json:"max_daily_conversations_per_business"`
	// account_update.
	RestrictionInfo []struct {
		Type       string   `json:"restriction_type"`
		Expiration flexTime `json:"expiration"`
	} `json:"restriction_info"`
	VolumeTierInfo *struct {
		Category string   `json:"pricing_category"`
		Tier     string   `json:"tier"`
		Month    string   `json:"effective_month"`
		Region   string   `json:"region"`
		At       flexTime `json:"tier_update_time"`
	} `json:"volume_tier_info"`
	UserPreferences []struct {
		WaID      flexString `json:"wa_id"`
		UserID    string     `json:"user_id"`
		Detail    string     `json:"detail"`
		Category  string     `json:"category"`
		Value     string     `json:"value"`
		Timestamp flexTime   `json:"timestamp"`
	} `json:"user_preferences"`
	Contacts []wireContact     `json:"contacts"`
	Messages []json.RawMessage `json:"messages"`
	Statuses []json.RawMessage `json:"statuses"`
	Errors   []wireError       `json:"errors"`
}

type wireContact struct {
	Profile struct {
		Name     string `json:"name"`
		Username string `json:"username"`
	} `json:"profile"`
	WaID   flexString `json:"wa_id"`
	UserID string     `json:"user_id"`
}

type wireError struct {
	Code      flexInt `json:"code"`
	Title     string  `json:"title"`
	Message   string  `json:"message"`
	Details   string  `json:"details"`
	ErrorData struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

func (w wireError) toError() Error {
	d := w.ErrorData.Details
	if d == "" {
		d = w.Details
	}
	return Error{Code: int(w.Code), Title: w.Title, Message: w.Message, Details: d}
}

type wireMedia struct {
	ID       string `json:"id"`
	MimeType string `json:"mime_type"`
	Caption  string `json:"caption"`
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
	Voice    bool   `json:"voice"`
}

type wireMessage struct {
	From       flexString  `json:"from"`
	FromUserID string      `json:"from_user_id"`
	ID         string      `json:"id"`
	Timestamp  flexTime    `json:"timestamp"`
	Type       string      `json:"type"`
	Errors     []wireError `json:"errors"`
	// GroupID names the group a group message was written in.
	GroupID string `json:"group_id"`
	Context *struct {
		ID                  string     `json:"id"`
		From                flexString `json:"from"`
		Forwarded           bool       `json:"forwarded"`
		FrequentlyForwarded bool       `json:"frequently_forwarded"`
	} `json:"context"`
	Referral *struct {
		SourceURL      string `json:"source_url"`
		SourceID       string `json:"source_id"`
		SourceType     string `json:"source_type"`
		Headline       string `json:"headline"`
		Body           string `json:"body"`
		CtwaClid       string `json:"ctwa_clid"`
		MediaType      string `json:"media_type"`
		ImageURL       string `json:"image_url"`
		VideoURL       string `json:"video_url"`
		ThumbnailURL   string `json:"thumbnail_url"`
		WelcomeMessage *struct {
			Text string `json:"text"`
		} `json:"welcome_message"`
	} `json:"referral"`
	Text *struct {
		Body string `json:"body"`
	} `json:"text"`
	Image    *wireMedia `json:"image"`
	Video    *wireMedia `json:"video"`
	Audio    *wireMedia `json:"audio"`
	Document *wireMedia `json:"document"`
	Sticker  *wireMedia `json:"sticker"`
	Location *struct {
		Latitude  float64 `json:"latitude"`
		Longitude float64 `json:"longitude"`
		Name      string  `json:"name"`
		Address   string  `json:"address"`
	} `json:"location"`
	Contacts []struct {
		Name struct {
			FormattedName string `json:"formatted_name"`
		} `json:"name"`
		Phones []struct {
			Phone string     `json:"phone"`
			WaID  flexString `json:"wa_id"`
			Type  string     `json:"type"`
		} `json:"phones"`
	} `json:"contacts"`
	Interactive *struct {
		Type        string `json:"type"`
		ButtonReply *struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"button_reply"`
		ListReply *struct {
			ID          string `json:"id"`
			Title       string `json:"title"`
			Description string `json:"description"`
		} `json:"list_reply"`
		CallPermissionReply *struct {
			Response   string   `json:"response"`
			Expiration flexTime `json:"expiration_timestamp"`
			Source     string   `json:"response_source"`
		} `json:"call_permission_reply"`
		NfmReply *struct {
			Name         string          `json:"name"`
			Body         string          `json:"body"`
			ResponseJSON json.RawMessage `json:"response_json"`
		} `json:"nfm_reply"`
	} `json:"interactive"`
	Button *struct {
		Payload string `json:"payload"`
		Text    string `json:"text"`
	} `json:"button"`
	Reaction *struct {
		MessageID string `json:"message_id"`
		Emoji     string `json:"emoji"`
	} `json:"reaction"`
	Order *struct {
		CatalogID    string `json:"catalog_id"`
		Text         string `json:"text"`
		ProductItems []struct {
			ProductRetailerID flexString `json:"product_retailer_id"`
			Quantity          flexNumber `json:"quantity"`
			ItemPrice         flexNumber `json:"item_price"`
			Currency          string     `json:"currency"`
		} `json:"product_items"`
	} `json:"order"`
	System *struct {
		Body string `json:"body"`
		Type string `json:"type"`
		// user_changed_number: the new number (wa_id; new_wa_id in the
		// older shape; customer is the old one there).
		WaID    flexString `json:"wa_id"`
		NewWaID flexString `json:"new_wa_id"`
		// user_changed_user_id: the new business-scoped user id and the
		// one before it.
		UserID         string `json:"user_id"`
		PreviousUserID string `json:"previous_user_id"`
	} `json:"system"`
}

type wireStatus struct {
	ID              string      `json:"id"`
	Status          string      `json:"status"`
	Timestamp       flexTime    `json:"timestamp"`
	RecipientID     flexString  `json:"recipient_id"`
	RecipientUserID string      `json:"recipient_user_id"`
	RecipientType   string      `json:"recipient_type"`
	BizOpaque       string      `json:"biz_opaque_callback_data"`
	Errors          []wireError `json:"errors"`
	Pricing         *Pricing    `json:"pricing"`
	Conversation    *struct {
		ID                  flexString `json:"id"`
		ExpirationTimestamp flexTime   `json:"expiration_timestamp"`
		Origin              struct {
			Type string `json:"type"`
		} `json:"origin"`
	} `json:"conversation"`
}

// flexString accepts a JSON string or number.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	*s = flexString(b)
	return nil
}

// Restriction is one of the account's restrictions
// (RESTRICTED_BIZ_INITIATED_MESSAGING ...) and when it expires.
type Restriction struct {
	Type    string
	Expires time.Time
}

// flexInt accepts a JSON number or a numeric string.
type flexInt int

func (i *flexInt) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	n, err := strconv.Atoi(string(s))
	if err != nil && s != "" {
		return nil // an error code we cannot read stays 0; the rest of the error is kept
	}
	*i = flexInt(n)
	return nil
}

// flexTime is a unix time in seconds, as a string or a number.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		return nil // unreadable timestamps are left zero; the receipt time stands in
	}
	t.Time = time.Unix(n, 0).UTC()
	return nil
}

// Parse reads a notification. It is lenient with what real webhooks
// carry (numbers as strings and strings as numbers, missing contacts,
// unknown types and fields) and strict only about the envelope: a body
// that is not a JSON object with an entry list is ErrNotNotification.
// Messages whose timestamp is missing or unreadable get received.
func Parse(body []byte, received time.Time) (*Update, error) {
	var n wireNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotNotification, jsonerr.Describe(err))
	}
	if n.Object == nil && n.Entry == nil {
		return nil, fmt.Errorf("%w: no object and no entry", ErrNotNotification)
	}
	if n.Object != nil && *n.Object != "whatsapp_business_account" {
		return nil, fmt.Errorf("%w: object is %q, not whatsapp_business_account", ErrNotNotification, *n.Object)
	}
	u := &Update{}
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			switch ch.Field {
			case "", "messages":
				parseValue(u, &ch.Value, received)
			case FieldUserPreferences:
				for _, p := range ch.Value.UserPreferences {
					c := string(p.WaID)
					if c == "" {
						c = p.UserID
					}
					at := p.Timestamp.Time
					if at.IsZero() {
						at = received
					}
					u.Preferences = append(u.Preferences, Preference{PhoneNumberID: ch.Value.Metadata.PhoneNumberID, Contact: c, Category: p.Category, Value: strings.ToLower(p.Value), Detail: p.Detail, Timestamp: at})
				}
			case FieldTemplateStatus, FieldTemplateCategory, FieldTemplateQuality, FieldNumberQuality, FieldAccountUpdate:
				ev := accountEvent(ch.Field, &ch.Value)
				// The entry's time orders the account's events, however old;
				// one missing or from the future counts as received now.
				ev.At = e.Time.Time
				if ev.At.IsZero() || ev.At.After(received) {
					ev.At = received
				}
				u.Account = append(u.Account, ev)
			default:
				u.Skipped = append(u.Skipped, ch.Field)
			}
		}
	}
	return u, nil
}

func accountEvent(field string, v *wireValue) AccountEvent {
	ev := AccountEvent{Field: field, TemplateID: string(v.TemplateID), Template: v.TemplateName,
		Language: strings.ReplaceAll(v.TemplateLanguage, "-", "_"), Event: strings.ToUpper(v.Event)}
	if v.Reason != nil && *v.Reason != "NONE" {
		ev.Reason = *v.Reason
	}
	switch field {
	case FieldTemplateStatus:
		ev.Status = ev.Event
	case FieldTemplateCategory:
		ev.Category, ev.Previous = strings.ToUpper(v.NewCategory), strings.ToUpper(v.PreviousCategory)
	case FieldTemplateQuality:
		ev.Quality, ev.Previous = strings.ToUpper(v.NewQualityScore), strings.ToUpper(v.PreviousQualityScore)
	case FieldAccountUpdate:
		for _, r := range v.RestrictionInfo {
			ev.Restrictions = append(ev.Restrictions, Restriction{Type: strings.ToUpper(r.Type), Expires: r.Expiration.Time})
		}
		if t := v.VolumeTierInfo; t != nil {
			ev.Detail = strings.TrimSpace(strings.Join([]string{t.Category, t.Tier, t.Region, t.Month}, " "))
		}
	case FieldNumberQuality:
		// current_limit is gone since February 2026: the limit is
		// max_daily_conversations_per_business, current_limit only from
		// a sender that still writes it.
		ev.Number, ev.Limit, ev.OldLimit = string(v.DisplayPhoneNumber), string(v.MaxDaily), v.OldLimit
		if ev.Limit == "" {
			ev.Limit = v.CurrentLimit
		}
		if ev.Number == "" {
			ev.Number = v.Metadata.DisplayPhoneNumber
		}
	}
	return ev
}

func parseValue(u *Update, v *wireValue, received time.Time) {
	if id, d := v.Metadata.PhoneNumberID, v.Metadata.DisplayPhoneNumber; id != "" && d != "" && len(id)+len(d) < 64 && len(u.Display) < 16 {
		if u.Display == nil {
			u.Display = map[string]string{}
		}
		u.Display[id] = d
	}
	for _, e := range v.Errors {
		u.Errors = append(u.Errors, e.toError())
	}
	for _, raw := range v.Messages {
		var wm wireMessage
		if err := json.Unmarshal(raw, &wm); err != nil {
			// A message we cannot read whole is still recorded for its
			// sender, as unsupported, with every field that could be read:
			// it is seen, and not retried forever.
			wm = decodeLeniently[wireMessage](raw)
			wm.Type = "unsupported"
			wm.Errors = append(wm.Errors, wireError{Title: "unreadable message", Details: jsonerr.Describe(err)})
		}
		m := toMessage(&wm, raw, v, received)
		u.Messages = append(u.Messages, m)
	}
	for _, raw := range v.Statuses {
		var s wireStatus
		var unreadable error
		if err := json.Unmarshal(raw, &s); err != nil {
			// One field of the wrong type loses that field, not the
			// status, nor the rest of the notification (which Meta would
			// redeliver for 7 days).
			s = decodeLeniently[wireStatus](raw)
			unreadable = err
		}
		st := Status{
			ID: s.ID, Status: s.Status, RecipientID: string(s.RecipientID), PhoneNumberID: v.Metadata.PhoneNumberID, Group: s.RecipientType == "group",
			Pricing:      s.Pricing,
			Conversation: conversationOf(&s),
		}
		st.Timestamp, _ = ClampTime(s.Timestamp.Time, received)
		for _, e := range s.Errors {
			st.Errors = append(st.Errors, e.toError())
		}
		if unreadable != nil {
			u.Errors = append(u.Errors, Error{Title: "status " + s.ID + " read in part", Details: jsonerr.Describe(unreadable)})
		}
		st.Key = "status:" + s.ID + ":" + s.Status
		st.Contact = st.RecipientID
		if st.Contact == "" {
			st.Contact = s.RecipientUserID
		}
		// Our outbound ids are "<contact>:m<seq>"; the contact part wins
		// over recipient_id, which may be a phone number for a contact
		// keyed by its user id.
		if c, seq, ok := strings.Cut(s.BizOpaque, ":m"); ok && c != "" && isDigits(seq) {
			st.Contact, st.Outbound = c, s.BizOpaque
		}
		u.Statuses = append(u.Statuses, st)
	}
}

// RedeliveryPeriod is how long WhatsApp retries a webhook it could not
// deliver: no genuine update is older than that when it arrives.
const RedeliveryPeriod = 7 * 24 * time.Hour

// ClampTime is the time an update counts as sent: WhatsApp's timestamp,
// unless it is missing, later than the time the update was received (a
// timestamp from the future cannot keep a window open), or older than
// WhatsApp's redelivery period (it cannot be genuine): then the time it
// was received. why says which, "" when the timestamp stands.
func ClampTime(ts, received time.Time) (t time.Time, why string) {
	switch {
	case ts.IsZero():
		return received, "missing"
	case ts.After(received):
		return received, "future"
	case ts.Before(received.Add(-RedeliveryPeriod)):
		return received, "stale"
	}
	return ts, ""
}

// decodeLeniently reads a message or a status field by field, keeping
// each field that decodes and leaving the others zero.
func decodeLeniently[T any](raw json.RawMessage) T {
	var out T
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return out
	}
	for k, v := range fields {
		one, err := json.Marshal(map[string]json.RawMessage{k: v})
		if err != nil {
			continue
		}
		var part T
		if json.Unmarshal(one, &part) == nil {
			json.Unmarshal(one, &out)
		}
	}
	return out
}

func isDigits(s string) bool { return flows.IsDigits(s) }

// formAnswer reads a WhatsApp Flow's answer: response_json is a string
// holding a JSON object (an object is accepted too). It returns the
// object without its flow_token, and the token; an answer that cannot be
// read, or that could not be stored, is an empty form.
func formAnswer(raw json.RawMessage) (map[string]any, string) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = json.RawMessage(text)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var form map[string]any
	if dec.Decode(&form) != nil || form == nil || flows.Storable(form) != nil {
		return map[string]any{}, ""
	}
	token, _ := form["flow_token"].(string)
	delete(form, "flow_token")
	return flows.NormalizeJSON(form).(map[string]any), token
}

func conversationOf(s *wireStatus) *Conversation {
	if s.Conversation == nil {
		return nil
	}
	return &Conversation{ID: string(s.Conversation.ID), Origin: s.Conversation.Origin.Type, Expires: s.Conversation.ExpirationTimestamp.Time}
}

// flexNumber accepts a JSON number or a numeric string; anything else is 0.
type flexNumber float64

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return nil
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil
	}
	*n = flexNumber(f)
	return nil
}

func toMessage(wm *wireMessage, raw json.RawMessage, v *wireValue, received time.Time) Message {
	m := Message{Key: wm.ID, PhoneNumberID: v.Metadata.PhoneNumberID}
	if m.Key == "" || strings.HasPrefix(m.Key, "<") || len(m.Key) > 256 {
		sum := sha256.Sum256(raw)
		m.Key = "noid:" + hex.EncodeToString(sum[:12])
	}
	// Who sent it: from (a wa_id), else the contact entry.
	m.WaID, m.UserID = string(wm.From), wm.FromUserID
	for _, c := range v.Contacts {
		if m.WaID != "" && string(c.WaID) == m.WaID || m.WaID == "" && len(v.Contacts) == 1 {
			m.Name = c.Profile.Name
			m.Username = c.Profile.Username
			if m.WaID == "" {
				m.WaID = string(c.WaID)
			}
			if m.UserID == "" {
				m.UserID = c.UserID
			}
		}
	}
	m.Contact = m.WaID
	if m.Contact == "" {
		m.Contact = m.UserID
	}
	if sys := wm.System; sys != nil {
		m.changedID(sys.Type, string(sys.WaID)+string(sys.NewWaID), sys.UserID, sys.PreviousUserID)
	}
	m.GroupID = wm.GroupID
	if wm.Context != nil {
		m.ContextID = wm.Context.ID
	}
	for _, e := range wm.Errors {
		m.Errors = append(m.Errors, e.toError())
	}
	in := engine.Inbound{ID: m.Key, Name: m.Name, WaID: m.WaID, UserID: m.UserID, Username: m.Username, PreviousID: m.PreviousID}
	in.Timestamp, m.Clock = ClampTime(wm.Timestamp.Time, received)
	m.Order = wm.Timestamp.Time
	if m.Order.IsZero() {
		m.Order = received
	}
	if c := wm.Context; c != nil {
		in.Context = flows.ContextEnv{ID: c.ID, From: string(c.From), Forwarded: c.Forwarded || c.FrequentlyForwarded, FrequentlyForwarded: c.FrequentlyForwarded}
	}
	media := func(w *wireMedia) {
		if w != nil {
			in.Media = flows.MediaEnv{ID: w.ID, MimeType: w.MimeType, Caption: w.Caption, SHA256: w.SHA256, Voice: w.Voice, Filename: w.Filename}
			in.Text = w.Caption
		}
	}
	switch {
	case wm.Text != nil && (wm.Type == "text" || wm.Type == ""):
		in.Type, in.Text = "text", wm.Text.Body
	case wm.Interactive != nil:
		in.Type = "interactive"
		switch {
		case wm.Interactive.ButtonReply != nil:
			in.Choice, in.Text = wm.Interactive.ButtonReply.ID, wm.Interactive.ButtonReply.Title
		case wm.Interactive.ListReply != nil:
			in.Choice, in.Text = wm.Interactive.ListReply.ID, wm.Interactive.ListReply.Title
		case wm.Interactive.CallPermissionReply != nil:
			// The contact's answer to a call permission request: recorded
			// (it does not move a flow), accept or reject in choice.
			r := wm.Interactive.CallPermissionReply
			in.Type, in.Choice, in.Text = "call_permission_reply", r.Response, r.Response
			if !r.Expiration.IsZero() {
				in.Text += " until " + r.Expiration.UTC().Format(time.RFC3339)
			}
		case wm.Interactive.NfmReply != nil:
			in.Choice, in.Text = wm.Interactive.NfmReply.Name, wm.Interactive.NfmReply.Body
			in.Form, in.FormToken = formAnswer(wm.Interactive.NfmReply.ResponseJSON)
		}
	case wm.Button != nil:
		in.Type = "button"
		in.Choice, in.Text = wm.Button.Payload, wm.Button.Text
		if in.Choice == "" {
			in.Choice = wm.Button.Text
		}
	case wm.Image != nil:
		in.Type = "image"
		media(wm.Image)
	case wm.Video != nil:
		in.Type = "video"
		media(wm.Video)
	case wm.Audio != nil:
		in.Type = "audio"
		media(wm.Audio)
	case wm.Document != nil:
		in.Type = "document"
		media(wm.Document)
	case wm.Sticker != nil:
		in.Type = "sticker"
		media(wm.Sticker)
	case wm.Location != nil:
		in.Type = "location"
		l := wm.Location
		in.Location = flows.LocationEnv{Latitude: l.Latitude, Longitude: l.Longitude, Name: l.Name, Address: l.Address}
		in.Text = l.Name
	case wm.Reaction != nil:
		in.Type = "reaction"
		in.Text = wm.Reaction.Emoji
		in.ReactionTo = wm.Reaction.MessageID
	case wm.Order != nil:
		in.Type = "order"
		in.Text = wm.Order.Text
		in.Order = flows.OrderEnv{CatalogID: wm.Order.CatalogID, Text: wm.Order.Text, Items: []any{}}
		for _, it := range wm.Order.ProductItems {
			in.Order.Items = append(in.Order.Items, map[string]any{"product_retailer_id": string(it.ProductRetailerID),
				"quantity": flows.NormalizeJSON(float64(it.Quantity)), "item_price": flows.NormalizeJSON(float64(it.ItemPrice)), "currency": it.Currency})
		}
	case wm.System != nil:
		in.Type = "system"
		in.Text = wm.System.Body
	case len(wm.Contacts) > 0:
		in.Type = "contacts"
		var names []string
		for _, c := range wm.Contacts[:min(len(wm.Contacts), 20)] {
			names = append(names, c.Name.FormattedName)
			phones := []any{}
			for _, p := range c.Phones[:min(len(c.Phones), 10)] {
				phones = append(phones, map[string]any{"phone": p.Phone, "wa_id": string(p.WaID), "type": p.Type})
			}
			in.Contacts = append(in.Contacts, map[string]any{"name": c.Name.FormattedName, "phones": phones})
		}
		in.Text = strings.Join(names, ", ")
	}
	if r := wm.Referral; r != nil {
		in.Referral = flows.ReferralEnv{SourceType: r.SourceType, SourceID: r.SourceID, SourceURL: r.SourceURL, Headline: r.Headline, Body: r.Body, CtwaClid: r.CtwaClid,
			MediaType: r.MediaType, ImageURL: r.ImageURL, VideoURL: r.VideoURL, ThumbnailURL: r.ThumbnailURL}
		if r.WelcomeMessage != nil {
			in.Referral.WelcomeMessage = r.WelcomeMessage.Text
		}
	}
	if in.Type == "" {
		// A type whose body is missing (an "interactive" with no
		// interactive object) is as good as unsupported; types without a
		// body of their own (revoke, edit, unknown ...) keep their name.
		switch wm.Type {
		case "", "text", "interactive", "button", "image", "video", "audio", "document", "sticker", "location", "reaction", "order", "system", "contacts":
			in.Type = "unsupported"
		default:
			in.Type = wm.Type
		}
	}
	m.Inbound = in
	return m
}
