package conversation

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flowbot/flowbot/engine"
)

// Types of the events out (INTERFACES.md version 2, section 2).
const (
	EventMessageReceived  = "message.received"
	EventHandoffStarted   = "handoff.started"
	EventHandoffReleased  = "handoff.released"
	EventFlowEnded        = "flow.ended"
	EventCampaignFinished = "campaign.finished"
)

// ContactView is a contact as events show it.
type ContactView struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Language string `json:"language,omitempty"`
	WaID     string `json:"wa_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	Username string `json:"username,omitempty"`
}

func contactView(c engine.Contact) *ContactView {
	return &ContactView{ID: c.ID, Name: c.Name, Language: c.Language, WaID: c.WaID, UserID: c.UserID, Username: c.Username}
}

// OutBody is an event out's own fields, one type per event type; the
// body posted is its fields beside the envelope's (id, type, at, contact,
// number).
type OutBody interface{ OutType() string }

// MessageReceivedOut is message.received: a message during a handoff.
type MessageReceivedOut struct {
	Message *engine.MessageView `json:"message"`
	Handoff HandoffView         `json:"handoff"`
}

// HandoffView is the handoff a message.received came during.
type HandoffView struct {
	Queue string    `json:"queue"`
	Since time.Time `json:"since"`
}

// HandoffStartedOut is handoff.started. Note and Since are there when the
// record holds the handoff.
type HandoffStartedOut struct {
	Queue   string     `json:"queue"`
	Flow    string     `json:"flow"`
	Step    string     `json:"step"`
	Note    *string    `json:"note,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Keyword string     `json:"keyword,omitempty"`
}

// HandoffReleasedOut is handoff.released; By is agent or keyword.
type HandoffReleasedOut struct {
	Queue string `json:"queue"`
	By    string `json:"by"`
	Flow  string `json:"flow"`
	Step  string `json:"step"`
}

// FlowEndedOut is flow.ended.
type FlowEndedOut struct {
	Flow   string `json:"flow"`
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// CampaignFinishedOut is campaign.finished.
type CampaignFinishedOut struct {
	Campaign CampaignSummary `json:"campaign"`
}

// CampaignSummary is a finished campaign's counts as campaign.finished
// shows them; the costs are shown as the API shows them.
type CampaignSummary struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Flow          string         `json:"flow"`
	Total         int            `json:"total"`
	Rejected      int            `json:"rejected"`
	Started       int            `json:"started"`
	Skipped       map[string]int `json:"skipped"`
	Sent          int            `json:"sent"`
	Delivered     int            `json:"delivered"`
	Read          int            `json:"read"`
	Failed        int            `json:"failed"`
	Cost          any            `json:"cost"`
	CostEstimated any            `json:"cost_estimated"`
	CreatedAt     time.Time      `json:"created_at"`
	FinishedAt    time.Time      `json:"finished_at"`
}

func (MessageReceivedOut) OutType() string  { return EventMessageReceived }
func (HandoffStartedOut) OutType() string   { return EventHandoffStarted }
func (HandoffReleasedOut) OutType() string  { return EventHandoffReleased }
func (FlowEndedOut) OutType() string        { return EventFlowEnded }
func (CampaignFinishedOut) OutType() string { return EventCampaignFinished }

// envelope is what every event out's body has.
type envelope struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	At      time.Time    `json:"at"`
	Contact *ContactView `json:"contact"`
	Number  string       `json:"number,omitempty"`
}

// NewEventOut makes an event out: its id (a random one for ""), its time,
// the contact and number it is about, and its body's own fields, as the
// JSON body posted.
func NewEventOut(id string, at time.Time, contact *ContactView, number string, body OutBody) EventOut {
	if id == "" {
		var b [10]byte
		rand.Read(b[:])
		id = "evt_" + hex.EncodeToString(b[:])
	}
	typ := body.OutType()
	env, err := json.Marshal(envelope{ID: id, Type: typ, At: at.UTC(), Contact: contact, Number: number})
	var fields []byte
	if err == nil {
		fields, err = json.Marshal(body)
	}
	if err != nil {
		raw := []byte(fmt.Sprintf(`{"id":%q,"type":%q,"error":%q}`, id, typ, err.Error()))
		return EventOut{ID: id, Type: typ, At: at, Body: raw}
	}
	raw := env
	if len(fields) > 2 {
		raw = append(append(env[:len(env)-1:len(env)-1], ','), fields[1:]...)
	}
	return EventOut{ID: id, Type: typ, At: at, Body: raw}
}

// emit adds an event out to the record, committed with it: the host
// queues it for delivery once the record is written.
func (k *Keeper) emit(st *Record, body OutBody) {
	if !k.Events {
		return
	}
	e := NewEventOut("", k.Now(), contactView(st.Contact), k.Number, body)
	e.Order = fmt.Sprintf("%020d.%04d", st.Version, len(st.EventsOut))
	st.EventsOut = append(st.EventsOut, e)
}

// eventsOf turns the engine's events into events out.
func (k *Keeper) eventsOf(st *Record, e engine.Event) {
	switch e := e.(type) {
	case engine.HandedOff:
		b := HandoffStartedOut{Queue: e.Queue, Flow: e.Flow, Step: e.Step, Keyword: e.Keyword}
		if h := st.Handoff; h != nil {
			since := h.Since.UTC()
			b.Note, b.Since = &h.Note, &since
		}
		k.emit(st, b)
	case engine.HandoffReleased:
		by := "agent"
		if e.Keyword != "" {
			by = "keyword"
		}
		k.emit(st, HandoffReleasedOut{Queue: e.Queue, By: by, Flow: e.Flow, Step: e.Step})
	case engine.FlowEnded:
		k.emit(st, FlowEndedOut{Flow: e.Flow, Step: e.Step, Reason: e.Reason})
	}
}
