package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// What WhatsApp says of a message is readable in flows: what it replies
// to, a voice note, a shared contact's numbers, an ad's welcome message;
// and a step with quote replies to the contact's message.
func TestInboundDetailsAndQuotedReplies(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: look
triggers: [{ when: "true" }]
steps:
  look:
    quote: true
    say: "{{ message.id }} replies to {{ message.context.id }}; voice {{ message.media.voice }}; card {{ len(message.contacts) > 0 ? message.contacts[0].phones[0].wa_id : '-' }}; ad {{ message.referral.welcome_message }}"
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	res, err := s.Say(context.Background(), engine.Inbound{ID: "wamid.IN1", Type: "audio",
		Media:    flows.MediaEnv{ID: "m1", MimeType: "audio/ogg; codecs=opus", Voice: true, SHA256: "abc"},
		Context:  flows.ContextEnv{ID: "wamid.OURS", From: "15550783881"},
		Referral: flows.ReferralEnv{SourceType: "ad", WelcomeMessage: "Hi! Ask us about coffee."}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outbound) != 1 {
		t.Fatalf("sent %d", len(res.Outbound))
	}
	m := res.Outbound[0].Message
	if want := "wamid.IN1 replies to wamid.OURS; voice true; card -; ad Hi! Ask us about coffee."; m.Text != want {
		t.Errorf("text %q\nwant %q", m.Text, want)
	}
	// A contact card is a message of its own (WhatsApp sends no card with
	// a voice note).
	res, err = s.Say(context.Background(), engine.Inbound{ID: "wamid.IN2", Type: "contacts",
		Contacts: []any{map[string]any{"name": "Bo", "phones": []any{map[string]any{"phone": "+1 555 000 2222", "wa_id": "15550002222", "type": "CELL"}}}}})
	if err != nil || len(res.Outbound) != 1 || !strings.Contains(res.Outbound[0].Message.Text, "card 15550002222") {
		t.Fatalf("a contact card: %v %+v", err, res)
	}
	if m.ReplyTo != "wamid.IN1" {
		t.Errorf("the quoted reply is to %q, want wamid.IN1", m.ReplyTo)
	}
}
