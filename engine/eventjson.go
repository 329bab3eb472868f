package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"
)

// The events' one serialized form: each event is a JSON object of its
// fields (snake_case; the header's at, flow and step among them) with
// "type", the name it is registered under. `flowbot run --events` writes
// them; the snapshots in engine/testdata/events pin every type's form.

// MessageView is an inbound message as events show it: in the events
// out (message.received) and in a msg_received event.
type MessageView struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	Text      string         `json:"text,omitempty"`
	Choice    string         `json:"choice,omitempty"`
	Media     *MediaView     `json:"media,omitempty"`
	Location  *LocationView  `json:"location,omitempty"`
	Form      map[string]any `json:"form,omitempty"`
	Timestamp time.Time      `json:"timestamp"`
}

// MediaView is a message's media as events show it.
type MediaView struct {
	Caption  string `json:"caption"`
	ID       string `json:"id"`
	MimeType string `json:"mime_type"`
}

// LocationView is a shared location as events show it.
type LocationView struct {
	Address   string  `json:"address"`
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Name      string  `json:"name"`
}

// View is the message as events show it.
func (m *Inbound) View() *MessageView {
	v := &MessageView{ID: m.ID, Type: m.Type, Text: m.Text, Choice: m.Choice, Form: m.Form, Timestamp: m.Timestamp}
	if m.Media.ID != "" {
		v.Media = &MediaView{ID: m.Media.ID, MimeType: m.Media.MimeType, Caption: m.Media.Caption}
	}
	if m.Type == "location" {
		l := m.Location
		v.Location = &LocationView{Latitude: l.Latitude, Longitude: l.Longitude, Name: l.Name, Address: l.Address}
	}
	return v
}

// Inbound is the message a view shows (what the view keeps of it).
func (v *MessageView) Inbound() *Inbound {
	m := &Inbound{ID: v.ID, Type: v.Type, Text: v.Text, Choice: v.Choice, Form: v.Form, Timestamp: v.Timestamp}
	if v.Media != nil {
		m.Media.ID, m.Media.MimeType, m.Media.Caption = v.Media.ID, v.Media.MimeType, v.Media.Caption
	}
	if l := v.Location; l != nil {
		m.Location.Latitude, m.Location.Longitude, m.Location.Name, m.Location.Address = l.Latitude, l.Longitude, l.Name, l.Address
	}
	return m
}

// msgReceivedJSON is MsgReceived's serialized form: its message as
// events show it.
type msgReceivedJSON struct {
	Header
	Message *MessageView `json:"message,omitempty"`
	Verbose bool         `json:"verbose,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (e MsgReceived) MarshalJSON() ([]byte, error) {
	j := msgReceivedJSON{Header: e.Header, Verbose: e.Verbose}
	if e.Message != nil {
		j.Message = e.Message.View()
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (e *MsgReceived) UnmarshalJSON(data []byte) error {
	var j msgReceivedJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*e = MsgReceived{Header: j.Header, Verbose: j.Verbose}
	if j.Message != nil {
		e.Message = j.Message.Inbound()
	}
	return nil
}

// eventTypes registers every event type under its name.
var eventTypes = map[string]Event{
	"msg_received":           MsgReceived{},
	"msg_ignored":            MsgIgnored{},
	"msg_created":            MsgCreated{},
	"flow_started":           FlowStarted{},
	"flow_ended":             FlowEnded{},
	"step_entered":           StepEntered{},
	"goal_reached":           GoalReached{},
	"edge_taken":             EdgeTaken{},
	"condition_evaluated":    ConditionEvaluated{},
	"var_set":                VarSet{},
	"call_made":              CallMade{},
	"template_fallback":      TemplateFallback{},
	"skipped_after_fallback": SkippedAfterFallback{},
	"undeliverable":          Undeliverable{},
	"template_not_sent":      TemplateNotSent{},
	"contact_opted_out":      ContactOptedOut{},
	"contact_opted_in":       ContactOptedIn{},
	"marketing_preference":   MarketingPreference{},
	"handed_off":             HandedOff{},
	"handoff_released":       HandoffReleased{},
	"agent_message":          AgentMessage{},
	"timer_fired":            TimerFired{},
	"no_flow_matched":        NoFlowMatched{},
	"reply_invalid":          ReplyInvalid{},
	"error_occurred":         ErrorOccurred{},
	"text_cut":               TextCut{},
	"template_unavailable":   TemplateUnavailable{},
	"free_entry_opened":      FreeEntryOpened{},
	"status_received":        StatusReceived{},
	"send_refused":           SendRefused{},
	"model_called":           ModelCalled{},
}

// typeNames is eventTypes by Go type.
var typeNames = func() map[reflect.Type]string {
	m := make(map[reflect.Type]string, len(eventTypes))
	for name, e := range eventTypes {
		m[reflect.TypeOf(e)] = name
	}
	return m
}()

// EventTypes lists the registered event types' names, sorted.
func EventTypes() []string {
	out := make([]string, 0, len(eventTypes))
	for name := range eventTypes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// EventType is the name an event is registered under ("" for a type not
// registered).
func EventType(e Event) string { return typeNames[reflect.TypeOf(e)] }

// MarshalEvent is an event's serialized form.
func MarshalEvent(e Event) ([]byte, error) {
	name := EventType(e)
	if name == "" {
		return nil, fmt.Errorf("event type %T is not registered", e)
	}
	fields, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	typ, _ := json.Marshal(name)
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	b.Write(typ)
	if len(fields) > 2 {
		b.WriteByte(',')
		b.Write(fields[1:])
	} else {
		b.WriteByte('}')
	}
	return b.Bytes(), nil
}

// UnmarshalEvent reads an event from its serialized form.
func UnmarshalEvent(data []byte) (Event, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("an event: %w", err)
	}
	proto, ok := eventTypes[head.Type]
	if !ok {
		return nil, fmt.Errorf("an event of unknown type %q", head.Type)
	}
	v := reflect.New(reflect.TypeOf(proto))
	if err := json.Unmarshal(data, v.Interface()); err != nil {
		return nil, fmt.Errorf("a %s event: %w", head.Type, err)
	}
	return v.Elem().Interface().(Event), nil
}
