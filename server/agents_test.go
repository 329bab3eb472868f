package server_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/server"
)

func hasLog(log []engine.Record, says string) bool {
	for _, r := range log {
		if strings.Contains(r.Detail, says) {
			return true
		}
	}
	return false
}

// Who is waiting: the contacts in a handoff, oldest first, a page at a
// time, filtered by queue and flow.
func TestListContactsWaiting(t *testing.T) {
	r := newRig(t, "../examples/support")
	for _, c := range []string{"15550005003", "15550005001", "15550005002"} {
		toHandoff(r, c)
		r.clock.Advance(time.Minute) // each waits a minute less than the one before
	}
	r.Post(textWebhook("15550005009", "Zed", "wamid.z", "hi", r.clock.Now())) // in the flow, not handed off
	r.waitState("15550005009", func(*conversation.Record) bool { return true })

	code, page := r.API("GET", "/api/contacts?handoff=true&limit=2", apiToken, nil)
	if code != 200 {
		t.Fatalf("list: %d %v", code, page)
	}
	ids := func(p map[string]any) []string {
		var out []string
		for _, c := range p["contacts"].([]any) {
			out = append(out, c.(map[string]any)["id"].(string))
		}
		return out
	}
	if got := ids(page); strings.Join(got, ",") != "15550005003,15550005001" || page["next"] == nil {
		t.Fatalf("first page: %v next %v", got, page["next"])
	}
	first := page["contacts"].([]any)[0].(map[string]any)
	if h := first["handoff"].(map[string]any); h["queue"] != "support" || first["flow"] != "triage" || first["window"].(map[string]any)["open"] != true {
		t.Fatalf("a waiting contact: %v", first)
	}
	_, page = r.API("GET", "/api/contacts?handoff=true&limit=2&after="+url.QueryEscape(page["next"].(string)), apiToken, nil)
	if got := ids(page); strings.Join(got, ",") != "15550005002" || page["next"] != nil {
		t.Fatalf("second page: %v next %v", got, page["next"])
	}
	if _, p := r.API("GET", "/api/contacts?queue=billing", apiToken, nil); len(ids(p)) != 0 {
		t.Fatalf("another queue: %v", ids(p))
	}
	if _, p := r.API("GET", "/api/contacts?handoff=false&flow=triage", apiToken, nil); strings.Join(ids(p), ",") != "15550005009" {
		t.Fatalf("in the flow, not handed off: %v", ids(p))
	}
	for _, q := range []string{"handoff=maybe", "limit=0", "limit=501", "window=ajar", "after=nonsense%21"} {
		if code, body := r.API("GET", "/api/contacts?"+q, apiToken, nil); code != 400 {
			t.Errorf("?%s: %d %v, want 400", q, code, body)
		}
	}
}

// An agent's message goes out in order with the bot's, is recorded as
// the agent's and priced; free-form is refused once the window closed,
// with what to send instead; a template always goes, except to a contact
// who opted out.
func TestAgentMessages(t *testing.T) {
	r := newRig(t, "../examples/support")
	const c = "15550006001"
	toHandoff(r, c)
	before := len(r.Fake.Sent())

	code, view := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"text": "Hi Ana, Sam here. Let me look."})
	if code != 202 || view["message_id"] == nil {
		t.Fatalf("an agent's text: %d %v", code, view)
	}
	sent := r.WaitSent(before + 1)
	if got := text(sent[before]); got != "Hi Ana, Sam here. Let me look." {
		t.Fatalf("sent %q", got)
	}
	st := r.waitState(c, func(st *conversation.Record) bool {
		return len(st.Recent) > 0 && st.Recent[len(st.Recent)-1].From == "agent"
	})
	last := st.Recent[len(st.Recent)-1]
	if last.From != "agent" || last.Via != "session" || last.ID != view["message_id"] {
		t.Fatalf("the agent's message as recorded: %+v", last)
	}
	if !hasLog(st.Log, "from an agent") {
		t.Fatalf("the log does not say an agent wrote: %v", st.Log)
	}

	// 25 hours later the window is closed.
	r.clock.Advance(25 * time.Hour)
	code, refused := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"text": "Still there?"})
	if code != 409 || refused["error"] != "window_closed" || refused["expires_at"] == nil || refused["template"] != "support_followup" ||
		!strings.Contains(refused["message"].(string), "template") {
		t.Fatalf("free-form after the window: %d %v", code, refused)
	}
	code, view = r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"template": map[string]any{"name": "support_followup", "params": map[string]any{"first_name": "Ana", "ticket": "T-1"}}})
	if code != 202 {
		t.Fatalf("a template after the window: %d %v", code, view)
	}
	sent = r.WaitSent(before + 2)
	if tpl := sent[before+1]; tpl.Type != "template" || !strings.Contains(string(tpl.Raw), `"T-1"`) {
		t.Fatalf("the template sent: %s", sent[before+1].Raw)
	}
	st = r.waitState(c, func(st *conversation.Record) bool {
		return len(st.Recent) > 0 && st.Recent[len(st.Recent)-1].Via == "template"
	})
	if st.Cost.Utility.Messages == 0 {
		t.Fatalf("the agent's template was not priced: %+v", st.Cost)
	}

	for _, bad := range []struct {
		body any
		code int
		says string
	}{
		{map[string]any{"template": map[string]any{"name": "nope"}}, 422, "no template"},
		{map[string]any{"template": map[string]any{"name": "support_followup", "params": []any{"Ana"}}}, 422, "named parameters"},
		{map[string]any{"template": map[string]any{"name": "support_followup", "params": map[string]any{"first_name": "Ana"}}}, 422, `"ticket"`},
		{map[string]any{"template": map[string]any{"name": "ticket_update", "params": []any{"1", "open"}}}, 422, "header"},
		{map[string]any{"text": "x", "template": map[string]any{"name": "support_followup"}}, 400, "not both"},
		{map[string]any{}, 400, "neither"},
		{map[string]any{"text": ""}, 422, "empty"},
		{map[string]any{"text": strings.Repeat("a", 4097)}, 422, "at most 4096"},
	} {
		code, out := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, bad.body)
		if code != bad.code || !strings.Contains(fmt.Sprint(out["error"]), bad.says) {
			t.Errorf("%v: %d %v, want %d saying %s", bad.body, code, out, bad.code, bad.says)
		}
	}
	if code, _ := r.API("POST", "/api/contacts/15550009999/messages", apiToken, map[string]any{"text": "hi"}); code != 404 {
		t.Errorf("an unknown contact: %d", code)
	}

	// Opted out: the template is refused too, and nothing is sent.
	r.Post(textWebhook(c, "Ana", "wamid.stop", "STOP", r.clock.Now()))
	r.waitState(c, func(st *conversation.Record) bool { return st.Contact.OptedOut })
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	n := len(r.Fake.Sent())
	code, out := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"force": true, "template": map[string]any{"name": "support_followup", "params": map[string]any{"first_name": "Ana", "ticket": "T-1"}}})
	if code != 409 || out["error"] != "opted_out" {
		t.Fatalf("a template to an opted-out contact: %d %v", code, out)
	}
	r.WaitFor("the server to be quiet", r.Srv.Quiet)
	if len(r.Fake.Sent()) != n {
		t.Fatal("something was sent to the opted-out contact")
	}
}

// An agent's message waits behind the bot's: it goes out after the
// replies the bot committed before it.
func TestAgentMessageInOrderWithTheBots(t *testing.T) {
	r := newRig(t, "../examples/support", func(c *server.Config) { c.CommandWait = 50 * time.Millisecond })
	const c = "15550007001"
	r.Post(textWebhook(c, "Ana", "wamid.o1", "hi", r.clock.Now()))
	r.WaitSent(1)
	resume := r.Fake.Hang()
	r.Post(buttonWebhook(c, "wamid.o2", "technical", "Technical problem", r.clock.Now()))
	r.WaitFor("the bot's reply to hang on WhatsApp", func() bool { return r.Fake.Waiting() == 1 })
	// The contact is in no handoff: the agent's message is refused unless
	// forced, and a forced one is recorded as such.
	code, out := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"text": "An agent, stepping in."})
	if code != 409 || out["error"] != "not_in_handoff" {
		resume()
		t.Fatalf("an agent's message outside a handoff: %d %v", code, out)
	}
	code, _ = r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"text": "An agent, stepping in.", "force": true})
	resume()
	if code != 202 {
		t.Fatalf("agent: %d", code)
	}
	sent := r.Settled(4)
	if got := text(sent[3]); got != "An agent, stepping in." {
		t.Fatalf("order: %v", texts(sent))
	}
	st := r.waitState(c, func(st *conversation.Record) bool { return hasLog(st.Log, "outside a handoff (forced)") })
	if st.Handoff != nil {
		t.Fatalf("the forced message handed the contact off: %+v", st.Handoff)
	}
}

// While a person has the conversation the bot answers nothing, so it
// shows nothing either: no typing indicator, no blue ticks (unless
// handoff_read_receipts), until the agent writes, which shows typing as
// any reply does.
func TestQuietDuringAHandoff(t *testing.T) {
	for _, tc := range []struct {
		dir      string
		receipts bool
	}{{"testdata/handoff", false}, {"testdata/handoff_receipts", true}} {
		t.Run(tc.dir, func(t *testing.T) {
			r := newRig(t, tc.dir, func(c *server.Config) { c.MarkRead = true })
			const c = "15550001111"
			r.Post(textWebhook(c, "Ana", "wamid.q1", "agent", r.clock.Now()))
			r.waitState(c, func(st *conversation.Record) bool { return st.Handoff != nil })
			r.Settled(1)
			before := len(r.Fake.Requests())
			r.Post(textWebhook(c, "Ana", "wamid.q2", "hello? anyone?", r.clock.Now()))
			r.waitState(c, func(st *conversation.Record) bool { return st.LastMessageID == "wamid.q2" })
			r.WaitFor("the server to be quiet", r.Srv.Quiet)
			during := r.Fake.Requests()[before:]
			switch {
			case tc.receipts && (len(during) != 1 || during[0].Type != "read" || during[0].Body["message_id"] != "wamid.q2" || during[0].Body["typing_indicator"] != nil):
				t.Fatalf("during the handoff, with read receipts: %v, want one read receipt without typing", bodies(during))
			case !tc.receipts && len(during) != 0:
				t.Fatalf("during the handoff: %v, want nothing", bodies(during))
			}
			before = len(r.Fake.Requests())
			if code, out := r.API("POST", "/api/contacts/"+c+"/messages", apiToken, map[string]any{"text": "Hi Ana, Sam here."}); code != 202 {
				t.Fatalf("the agent's message: %d %v", code, out)
			}
			r.WaitSent(2)
			after := r.Fake.Requests()[before:]
			if len(after) != 2 || after[0].Type != "read" || after[0].Body["message_id"] != "wamid.q2" || after[0].Body["typing_indicator"] == nil || after[1].Type != "text" {
				t.Fatalf("the agent's message: %v, want the read receipt with typing, then the text", bodies(after))
			}
		})
	}
}
