package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/engine"
)

const richBot = `
flow: main
start: details
triggers: [{ keyword: book }]
vars: { booking: {} }
fallback: { template: nudge, params: ["{{ contact.name }}"] }
steps:
  details:
    form: { flow_id: "99", cta: "Book", body: "Your visit", screen: BOOKING, data: { size: "{{ 2 + 2 }}" } }
    save: booking
    goto: thanks
  thanks:
    say: "Booked for {{ vars.booking.party }}."
    link: { url: "https://x.example/b", text: "See it" }
    react: "👍"
    end: true
`

// TestFormTokenTiesTheAnswerToTheStep: the form goes out with a token and
// typed data; an answer with another of flowbot's tokens is recorded, not
// routed; the answer with the step's token is saved and routes on; the
// link carries the last say as its body, and the reaction targets the
// contact's latest message.
func TestFormTokenTiesTheAnswerToTheStep(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": windowTemplates, "flows/main.yaml": richBot})
	s := newSession(t, bot, engine.Options{})
	ctx := context.Background()
	res := say(t, s, "book")
	if len(res.Outbound) != 1 {
		t.Fatalf("sent %q", texts(res))
	}
	f := res.Outbound[0].Message.Form
	if f == nil || !strings.HasPrefix(f.Token, engine.FormTokenPrefix+"main:details:") || f.Data["size"] != 4 {
		t.Fatalf("the form message is %+v", res.Outbound[0].Message)
	}
	stale := engine.Inbound{Type: "interactive", Form: map[string]any{"party": 9}, FormToken: engine.FormTokenPrefix + "main:details:zz"}
	res, err := s.Say(ctx, stale)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outbound) != 0 || len(records(res, engine.RecIgnored)) != 1 {
		t.Fatalf("a stale answer sent %q and recorded %v", texts(res), res.Records)
	}
	answer := engine.Inbound{ID: "wamid.ANSWER", Type: "interactive", Form: map[string]any{"party": 4}, FormToken: f.Token}
	if res, err = s.Say(ctx, answer); err != nil {
		t.Fatal(err)
	}
	got := texts(res)
	if strings.Join(got, " | ") != "Booked for 4. [See it -> https://x.example/b] | [reaction 👍]" {
		t.Fatalf("the answer got %q", got)
	}
	if r := res.Outbound[1].Message.Reaction; r == nil || r.MessageID != "wamid.ANSWER" {
		t.Fatalf("the reaction is %+v, want it on the answer", r)
	}
	if st, _ := s.State(ctx); st.Vars["booking"].(map[string]any)["party"] != 4 || st.FormToken != "" {
		t.Fatalf("vars %v, token %q", st.Vars, st.FormToken)
	}
}

// TestRichMessagesFallBackOutsideTheWindow: form, link and react are
// free-form; a flow started by the API, with the window closed, sends the
// fallback template instead, and react without a message is an error.
func TestRichMessagesFallBackOutsideTheWindow(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": windowTemplates, "flows/main.yaml": richBot})
	s := newSession(t, bot, engine.Options{})
	res, err := s.Start(context.Background(), "main", "thanks", map[string]any{"booking": map[string]any{"party": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); len(got) != 1 || !strings.HasPrefix(got[0], "[template nudge]") {
		t.Fatalf("sent %q, want the fallback only", got)
	}
	errs := records(res, engine.RecError)
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, "no message to react to") {
		t.Fatalf("errors %v", errs)
	}
}
