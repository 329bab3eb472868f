package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/internal/realpayloads"
)

// TestTemplatePausedByTheAccount checks FLOW_SPEC.md 8.9 on two instances
// sharing one database: a message_template_status_update that pauses a
// template, received by one instance, is stored; the other instance
// follows it (after its sweep, or a restart); a flow that would send the
// template records template_unavailable and sends nothing; GET
// /api/templates shows the live status; approved again, it is sent.
func TestTemplatePausedByTheAccount(t *testing.T) {
	rigs := instances(t, 2, "../examples/shop")
	a, b := rigs[0], rigs[1]
	paused := `{"object":"whatsapp_business_account","entry":[{"id":"1","time":1731705721,"changes":[{"field":"message_template_status_update",
		"value":{"event":"PAUSED","message_template_id":806312974732579,"message_template_name":"order_shipped","message_template_language":"en_US","reason":"NONE"}}]}]}`
	if code := a.Post([]byte(paused)); code != 200 {
		t.Fatalf("the status event was answered %d", code)
	}
	// The real notification of another project: a category change.
	category := realpayloads.File(t, "62-template_category_update-pywa.json")
	if a.Post(category) != 200 {
		t.Fatal("the category event was refused")
	}
	_, list := b.API("GET", "/api/templates", apiToken, nil)
	var row map[string]any
	for _, r := range list["templates"].([]any) {
		if m := r.(map[string]any); m["name"] == "order_shipped" && m["language"] == "en_US" {
			row = m
		}
	}
	if row == nil || row["live_status"] != "PAUSED" || row["status"] != "APPROVED" || row["sendable"] != false {
		t.Fatalf("GET /api/templates on the other instance: %v", row)
	}

	b.WaitFor("the other instance to follow the pause", func() bool {
		lt, ok := b.Srv.Engine().Options().Live.Get("order_shipped", "en_US")
		return ok && lt.Status == "PAUSED"
	})
	code, _ := b.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken,
		map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}, "name": "Sam"})
	if code != 202 {
		t.Fatalf("start: %d", code)
	}
	var events []any
	b.WaitFor("the template_unavailable event", func() bool {
		_, view := b.API("GET", "/api/contacts/447700900123", apiToken, nil)
		events, _ = view["events"].([]any)
		for _, e := range events {
			r := e.(map[string]any)
			if r["kind"] == engine.RecUnavailable && strings.Contains(r["detail"].(string), "order_shipped (en_US) not sent: WhatsApp reports it PAUSED") {
				return view["flow"] == nil
			}
		}
		return false
	})
	b.WaitFor("the server to be quiet", b.Srv.Quiet)
	if len(b.Fake.Sent()) != 0 {
		t.Fatalf("a paused template was sent: %v", bodies(b.Fake.Sent()))
	}

	// Approved an hour later; then Meta redelivers the pause: events are
	// applied in the order they happened (the entry's time), so the late
	// PAUSED changes nothing.
	approved := strings.Replace(strings.Replace(paused, `"PAUSED"`, `"APPROVED"`, 1), `1731705721`, `1731709321`, 1)
	if code := b.Post([]byte(approved)); code != 200 {
		t.Fatalf("the approval was answered %d", code)
	}
	if code := b.Post([]byte(paused)); code != 200 {
		t.Fatalf("the redelivered pause was answered %d", code)
	}
	a.WaitFor("the first instance to follow the approval", func() bool {
		lt, _ := a.Srv.Engine().Options().Live.Get("order_shipped", "en_US")
		return lt.Status == "APPROVED"
	})
	if lt, _ := b.Srv.Engine().Options().Live.Get("order_shipped", "en_US"); lt.Status != "APPROVED" {
		t.Fatalf("after a redelivered pause older than the approval: %+v", lt)
	}
	if code, _ := a.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken,
		map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}}); code != 202 {
		t.Fatalf("start again: %d", code)
	}
	a.WaitSent(1)
}

// Events for templates the bot does not have are counted, not kept: an
// account's thousand other templates cannot grow the store; a kept
// reason is capped.
func TestTemplateEventsAreBounded(t *testing.T) {
	r := newRig(t, "../examples/shop")
	for i := range 50 {
		r.Post([]byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","time":1731705721,"changes":[{"field":"message_template_status_update",
		"value":{"event":"REJECTED","message_template_id":%d,"message_template_name":"someone_elses_%d","message_template_language":"en_US","reason":"INVALID_FORMAT"}}]}]}`, i, i)))
	}
	long := strings.Repeat("r", 5000)
	r.Post([]byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","time":1731705721,"changes":[{"field":"message_template_status_update",
		"value":{"event":"REJECTED","message_template_id":1,"message_template_name":"order_shipped","message_template_language":"en_US","reason":"` + long + `"}}]}]}`))
	states, err := r.store.TemplateStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Name != "order_shipped" || len(states[0].Reason) > 260 {
		t.Fatalf("kept %d states: %+v", len(states), states)
	}
	if !strings.Contains(r.metricsText(), `flowbot_template_events_total{kind="unknown_template",value="other"} 50`) {
		t.Fatal("the unknown templates' events were not counted")
	}
}
