package engine_test

import (
	"time"

	"context"
	"github.com/flowbot/flowbot/flows"
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
		t.Fatalf("a stale answer sent %q and recorded %v", texts(res), res.Records())
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

// TestFreeEntryPoint checks FLOW_SPEC.md 8.6 under both pricing models:
// the answer to a message from an ad opens a 72-hour free entry point in
// which every message is free, templates included; after 72 hours
// messages are charged again. A message without a referral opens nothing.
func TestFreeEntryPoint(t *testing.T) {
	flow := `
flow: main
start: hi
triggers: [{ keyword: hi }]
steps:
  hi:
    say: "Hello!"
    goto: later
  later:
    wait: 30h
    goto: remind
  remind:
    template: { name: notice }
    goto: last
  last:
    wait: 50h
    goto: again
  again:
    template: { name: notice }
    end: true
`
	for _, model := range []string{"per_message", "conversation"} {
		t.Run(model, func(t *testing.T) {
			bot := loadBot(t, map[string]string{"flowbot.yaml": "pricing: { model: " + model + ", rates: { utility: 0.01, service: 0.002 } }\n",
				"flows/main.yaml": flow, "templates.yaml": windowTemplates})
			ctx := context.Background()
			s := newSession(t, bot, engine.Options{})
			res, err := s.Say(ctx, engine.Inbound{Type: "text", Text: "hi", Referral: flows.ReferralEnv{SourceType: "ad", SourceID: "120210000000", CtwaClid: "ARAkLk"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(records(res, engine.RecFreeEntry)) != 1 || res.Outbound[0].Cost != 0 {
				t.Fatalf("the answer did not open a free entry point: %v", res.Records())
			}
			st, _ := s.State(ctx)
			if want := t0.Add(72 * time.Hour); !st.FreeUntil.Equal(want) {
				t.Fatalf("free until %v, want %v", st.FreeUntil, want)
			}
			if err := s.Advance(ctx, 30*time.Hour); err != nil { // the window closed; the entry point is open
				t.Fatal(err)
			}
			st, _ = s.State(ctx)
			if st.Cost.Total() != 0 || len(s.Sent) != 2 || s.Sent[1].Message.Kind != "template" {
				t.Fatalf("at 30h: cost %v, sent %d %v", st.Cost.Total(), len(s.Sent), s.Records)
			}
			if err := s.Advance(ctx, 50*time.Hour); err != nil { // 80h: the entry point has ended
				t.Fatal(err)
			}
			st, _ = s.State(ctx)
			if got := st.Cost.Of(flows.Utility).Amount; abs(got-0.01) > 1e-12 || !st.FreeUntil.Before(t0.Add(80*time.Hour)) {
				t.Fatalf("at 80h: utility %g, want 0.01 for the template after the entry point", got)
			}

			plain := newSession(t, bot, engine.Options{})
			say(t, plain, "hi")
			if st, _ := plain.State(ctx); !st.FreeUntil.IsZero() || st.Cost.Total() == 0 {
				t.Fatalf("a message without a referral opened a free entry point: %+v", st.Cost)
			}
		})
	}
}

// TestMarketingOptOut checks FLOW_SPEC.md 8.9: a contact who stopped
// marketing messages in WhatsApp gets no MARKETING template (recorded
// opted_out) while utility templates still go out; resuming undoes it.
func TestMarketingOptOut(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": windowTemplates, "flows/main.yaml": `
flow: main
start: a
steps:
  a:
    template: { name: nudge, params: ["{{ contact.marketing_opted_out ? 'x' : 'y' }}"] }
    goto: b
  b:
    template: { name: notice }
    end: true
`})
	ctx := context.Background()
	s := newSession(t, bot, engine.Options{})
	if _, err := s.Preference(ctx, "stop"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Start(ctx, "main", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); len(got) != 1 || got[0] != "[template notice] A notice." {
		t.Fatalf("sent %q, want the utility template only", got)
	}
	if r := records(res, engine.RecOptedOut); len(r) != 1 || !strings.Contains(r[0].Detail, "nudge not sent: the contact stopped marketing messages") {
		t.Fatalf("opted_out records %v", r)
	}
	if _, err := s.Preference(ctx, "resume"); err != nil {
		t.Fatal(err)
	}
	if res, _ = s.Start(ctx, "main", "", nil); len(res.Outbound) != 2 {
		t.Fatalf("after resume sent %q", texts(res))
	}
}

// TestTemplateUnavailable checks FLOW_SPEC.md 8.9: a template the account
// paused is not sent, a template_unavailable event names it and its
// status, and the flow stops there; approved again, it goes out; a
// recategorised template is priced as its new category.
func TestTemplateUnavailable(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": windowTemplates, "flows/main.yaml": `
flow: main
start: wait
steps:
  wait:
    wait: 25h
    goto: remind
  remind:
    template: { name: notice }
    goto: after
  after:
    template: { name: nudge, params: ["x"] }
    end: true
`})
	live := &engine.Live{}
	ctx := context.Background()
	s := newSession(t, bot, engine.Options{Live: live})
	if _, err := s.Start(ctx, "main", "", nil); err != nil {
		t.Fatal(err)
	}
	live.Set(map[string]engine.LiveTemplate{"notice/en_US": {Status: "PAUSED"}}) // paused while the flow waits
	if err := s.Advance(ctx, 25*time.Hour); err != nil {
		t.Fatal(err)
	}
	st, _ := s.State(ctx)
	un := 0
	for _, r := range s.Records {
		if r.Kind == engine.RecUnavailable && strings.Contains(r.Detail, "notice (en_US) not sent: WhatsApp reports it PAUSED") {
			un++
		}
	}
	if un != 1 || len(s.Sent) != 0 || st.Flow != "" {
		t.Fatalf("paused: %d template_unavailable, sent %d, flow %q", un, len(s.Sent), st.Flow)
	}

	live.Set(map[string]engine.LiveTemplate{"notice/en_US": {Status: "APPROVED", Category: flows.Marketing}})
	res, err := s.Start(ctx, "main", "remind", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outbound) != 2 || res.Outbound[0].Category != flows.Marketing || res.Outbound[0].Message.Template.Category != flows.Marketing {
		t.Fatalf("approved again and recategorised: %+v", res.Outbound)
	}
}

// TestInboundDetailsKept: an order's items reach message.order, a
// reaction's target is recorded, and the contact's wa_id, BSUID and
// username are kept on one contact.
func TestInboundDetailsKept(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: got
triggers: [{ when: 'message.type == "order"' }]
steps:
  got:
    say: "{{ len(message.order.items) }} items, first {{ message.order.items[0].product_retailer_id }} x{{ message.order.items[0].quantity }}"
    end: true
`})
	ctx := context.Background()
	s := newSession(t, bot, engine.Options{})
	order := engine.Inbound{Type: "order", WaID: "c1", UserID: "US.1349", Username: "ana.cafe", Order: flows.OrderEnv{CatalogID: "354", Items: []any{
		map[string]any{"product_retailer_id": "HAMBURGER", "quantity": 3, "item_price": 30, "currency": "ILS"}}}}
	res, err := s.Say(ctx, order)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); len(got) != 1 || got[0] != "1 items, first HAMBURGER x3" {
		t.Fatalf("the order got %q", got)
	}
	res, err = s.Say(ctx, engine.Inbound{Type: "reaction", Text: "😮", ReactionTo: "wamid.OURS"})
	if err != nil {
		t.Fatal(err)
	}
	if r := records(res, engine.RecIgnored); len(r) != 1 || !strings.Contains(r[0].Detail, `reaction "😮" on wamid.OURS`) {
		t.Fatalf("the reaction was recorded as %v", res.Records())
	}
	st, _ := s.State(ctx)
	if st.Contact.ID != "c1" || st.Contact.WaID != "c1" || st.Contact.UserID != "US.1349" || st.Contact.Username != "ana.cafe" {
		t.Fatalf("contact %+v", st.Contact)
	}
}
