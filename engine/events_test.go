package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// Handle returns typed events, each with its fields; the log's records
// are their renderings.
func TestTypedEvents(t *testing.T) {
	bot := loadBot(t, map[string]string{
		"flowbot.yaml": "default_flow: a\nkeywords:\n  - { match: [agent], handoff: { queue: desk } }\n",
		"flows/a.yaml": "flow: a\nstart: s\nsteps:\n  s: { ask: \"Name?\", save: name, goto: t }\n  t: { say: \"Hi {{ vars.name }}\", end: true }\nvars: { name: \"\" }\n",
	})
	e := engine.New(bot, engine.Options{Trace: true})
	st := engine.NewSession("c1")
	st.LastInbound = t0
	res, err := e.Handle(context.Background(), st, engine.MessageIn{Message: &engine.Inbound{ID: "w1", Type: "text", Text: "hi", Timestamp: t0}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range res.Events {
		kinds = append(kinds, fmt.Sprintf("%T", ev))
	}
	want := []string{"engine.MsgReceived", "engine.FlowStarted", "engine.StepEntered", "engine.MsgCreated"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if m := res.Events[0].(engine.MsgReceived); m.Message.Text != "hi" || !m.Verbose {
		t.Errorf("MsgReceived %+v", m)
	}
	if c := res.Events[3].(engine.MsgCreated); c.ID != res.Outbound[0].ID || c.Flow != "a" || c.Step != "s" {
		t.Errorf("MsgCreated %+v", c)
	}
	for i, ev := range res.Events {
		if ev.Record() != res.Records()[i] || ev.Kind() != res.Records()[i].Kind {
			t.Errorf("event %d renders %+v, the log has %+v", i, ev.Record(), res.Records()[i])
		}
	}
	res, _ = e.Handle(context.Background(), st, engine.MessageIn{Message: &engine.Inbound{ID: "w2", Type: "text", Text: "agent", Timestamp: t0}}, t0)
	var handed *engine.HandedOff
	for _, ev := range res.Events {
		if h, ok := ev.(engine.HandedOff); ok {
			handed = &h
		}
	}
	if handed == nil || handed.Queue != "desk" || handed.Keyword != "agent" || handed.Record().Detail != `keyword "agent": handed off to desk` {
		t.Fatalf("the keyword handoff: %+v", res.Events)
	}
}

// The kinds conversation tests may name are the engine's.
func TestEventKindsAreTheEngines(t *testing.T) {
	kinds := []string{engine.RecInbound, engine.RecFlowStart, engine.RecFlowEnd, engine.RecStep, engine.RecCondition,
		engine.RecSet, engine.RecCall, engine.RecSent, engine.RecFallback, engine.RecSkipped, engine.RecUndeliverable,
		engine.RecOptedOut, engine.RecOptOut, engine.RecOptIn, engine.RecHandoff, engine.RecReleased, engine.RecTimer,
		engine.RecIgnored, engine.RecUnmatched, engine.RecRetry, engine.RecError, engine.RecWarning, engine.RecStatus, engine.RecFreeEntry, engine.RecUnavailable, engine.RecGoal, engine.RecModel}
	if fmt.Sprint(kinds) != fmt.Sprint(flows.EventKinds) {
		t.Errorf("flows.EventKinds = %v\nthe engine's kinds: %v", flows.EventKinds, kinds)
	}
}
