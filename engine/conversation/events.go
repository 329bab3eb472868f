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

// NewEventOut makes an event out: its id (a random one for ""), its type
// and time, and the fields of its kind, as the JSON body posted.
func NewEventOut(id, typ string, at time.Time, contact *ContactView, number string, fields map[string]any) EventOut {
	if id == "" {
		var b [10]byte
		rand.Read(b[:])
		id = "evt_" + hex.EncodeToString(b[:])
	}
	body := map[string]any{"id": id, "type": typ, "at": at.UTC(), "contact": contact}
	if number != "" {
		body["number"] = number
	}
	for k, v := range fields {
		body[k] = v
	}
	raw, err := json.Marshal(body)
	if err != nil {
		raw = []byte(fmt.Sprintf(`{"id":%q,"type":%q,"error":%q}`, id, typ, err.Error()))
	}
	return EventOut{ID: id, Type: typ, At: at, Body: raw}
}

// emit adds an event out to the record, committed with it: the host
// queues it for delivery once the record is written.
func (k *Keeper) emit(st *Record, typ string, fields map[string]any) {
	if !k.Events {
		return
	}
	e := NewEventOut("", typ, k.Now(), contactView(st.Contact), k.Number, fields)
	e.Order = fmt.Sprintf("%020d.%04d", st.Version, len(st.EventsOut))
	st.EventsOut = append(st.EventsOut, e)
}

// eventsOf turns the engine's events into events out.
func (k *Keeper) eventsOf(st *Record, e engine.Event) {
	switch e := e.(type) {
	case engine.HandedOff:
		f := map[string]any{"queue": e.Queue, "flow": e.Flow, "step": e.Step}
		if st.Handoff != nil {
			f["note"] = st.Handoff.Note
			f["since"] = st.Handoff.Since.UTC()
		}
		if e.Keyword != "" {
			f["keyword"] = e.Keyword
		}
		k.emit(st, EventHandoffStarted, f)
	case engine.HandoffReleased:
		by := "agent"
		if e.Keyword != "" {
			by = "keyword"
		}
		k.emit(st, EventHandoffReleased, map[string]any{"queue": e.Queue, "by": by, "flow": e.Flow, "step": e.Step})
	case engine.FlowEnded:
		k.emit(st, EventFlowEnded, map[string]any{"flow": e.Flow, "step": e.Step, "reason": e.Reason})
	}
}
