package engine_test

import (
	"flag"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/internal/snapshot"
)

var updateEvents = flag.Bool("update", false, "write the events' snapshots in testdata/events")

// sample is one event of each registered type with every field set.
func samples() map[string]engine.Event {
	h := engine.Header{At: time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC), Flow: "order", Step: "ask_size"}
	in := &engine.Inbound{ID: "wamid.in.1", Type: "text", Text: "large", Timestamp: h.At}
	return map[string]engine.Event{
		"msg_received":           engine.MsgReceived{Header: h, Message: in, Verbose: true},
		"msg_ignored":            engine.MsgIgnored{Header: h, Reason: "a reaction moves no flow"},
		"msg_created":            engine.MsgCreated{Header: h, ID: "15550001111:m3"},
		"flow_started":           engine.FlowStarted{Header: h, Reason: `keyword "buy"`},
		"flow_ended":             engine.FlowEnded{Header: h, Reason: "end: true"},
		"step_entered":           engine.StepEntered{Header: h},
		"goal_reached":           engine.GoalReached{Header: h},
		"edge_taken":             engine.EdgeTaken{Header: h, Index: 2, EdgeKind: "timeout", To: "remind"},
		"condition_evaluated":    engine.ConditionEvaluated{Header: h, Expr: `vars.size == "large"`, Value: true, Validate: true},
		"var_set":                engine.VarSet{Header: h, Name: "size", Value: `"large"`},
		"call_made":              engine.CallMade{Header: h, Method: "POST", URL: "https://shop.example/orders", Status: 201},
		"template_fallback":      engine.TemplateFallback{Header: h, Template: "order_reminder"},
		"skipped_after_fallback": engine.SkippedAfterFallback{Header: h, MessageKind: "text", Text: "Still there?"},
		"undeliverable":          engine.Undeliverable{Header: h, Reason: "the window is closed and the step names no template"},
		"template_not_sent":      engine.TemplateNotSent{Header: h, Template: "spring_sale", Marketing: true},
		"contact_opted_out":      engine.ContactOptedOut{Header: h},
		"contact_opted_in":       engine.ContactOptedIn{Header: h},
		"marketing_preference":   engine.MarketingPreference{Header: h, Stopped: true},
		"handed_off":             engine.HandedOff{Header: h, Queue: "support", Keyword: "agent"},
		"handoff_released":       engine.HandoffReleased{Header: h, Queue: "support", Keyword: "bot"},
		"agent_message":          engine.AgentMessage{Header: h, ID: "15550001111:m4", Summary: "Hello, this is Ana", Forced: true},
		"timer_fired":            engine.TimerFired{Header: h, Timer: engine.Timer{ID: "15550001111:t1", Kind: engine.TimerTimeout, Due: h.At, Flow: "order", Step: "ask_size", Seq: 3}},
		"no_flow_matched":        engine.NoFlowMatched{Header: h},
		"reply_invalid":          engine.ReplyInvalid{Header: h, Attempt: 1, Times: 3, Then: "give_up"},
		"error_occurred":         engine.ErrorOccurred{Header: h, Err: "vars.total: undefined"},
		"text_cut":               engine.TextCut{Header: h, What: "a button title over 20 characters"},
		"template_unavailable":   engine.TemplateUnavailable{Header: h, Template: "order_reminder", Language: "en_US", Status: "PAUSED"},
		"free_entry_opened":      engine.FreeEntryOpened{Header: h, Until: h.At.Add(72 * time.Hour)},
		"status_received":        engine.StatusReceived{Header: h, Status: "delivered", WAMID: "wamid.out.9"},
		"send_refused":           engine.SendRefused{Header: h, MessageID: "15550001111:m3", Code: 131047, Err: "re-engagement message", Status: true},
		"model_called": engine.ModelCalled{Header: h, What: "classify", Intent: "book", Confidence: 0.92, Keyword: false,
			InputTokens: 120, OutputTokens: 8, Cost: 0.000021, Took: 850 * time.Millisecond, Error: "", Detail: "book 0.92"},
	}
}

// Every event type has one serialized form, pinned by a snapshot
// (testdata/events/<type>.json; go test ./engine -run EventSnapshots
// -update writes them), and reads back as the event it was.
func TestEventSnapshots(t *testing.T) {
	all := samples()
	if got, want := len(all), len(engine.EventTypes()); got != want {
		t.Fatalf("%d samples for %d registered event types", got, want)
	}
	for _, name := range engine.EventTypes() {
		e, ok := all[name]
		if !ok {
			t.Errorf("no sample of the %s event", name)
			continue
		}
		if got := engine.EventType(e); got != name {
			t.Errorf("%T is registered as %q, want %q", e, got, name)
		}
		b, err := engine.MarshalEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		want := snapshot.JSON(t, filepath.Join("testdata", "events", name+".json"), b, *updateEvents)
		back, err := engine.UnmarshalEvent(want)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Errorf("the %s snapshot reads back as\n%#v\nwant\n%#v", name, back, e)
		}
	}
}

// A serialized event of no registered type, or not an object, is an
// error that says so.
func TestUnmarshalEventRefusesJunk(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"flow_exploded"}`:           `unknown type "flow_exploded"`,
		`[1,2]`:                              "an event",
		`{"type":"var_set","name":5}`:        "a var_set event",
		`{"flow":"order","step":"ask_size"}`: `unknown type ""`,
	} {
		if _, err := engine.UnmarshalEvent([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", in, err, want)
		}
	}
	type unregistered struct{ engine.FlowEnded }
	if _, err := engine.MarshalEvent(unregistered{}); err == nil {
		t.Error("an unregistered event type serialized")
	}
}
