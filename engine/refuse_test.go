package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/engine"
)

// TestWhatWhatsAppRefusesIsDecidedAtRender: a template parameter that
// comes out with a newline is cleaned and the change recorded; one that
// comes out empty, an empty button value, and a one-time code to a
// contact known only by a user id are never sent, and leave the outbox
// as failed with WhatsApp's code and the reason.
func TestWhatWhatsAppRefusesIsDecidedAtRender(t *testing.T) {
	bot := loadBot(t, map[string]string{"templates.yaml": `
templates:
  - { name: note, language: en_US, category: UTILITY, status: APPROVED, body: "Note: {{1}}." }
  - { name: login_code, language: en_US, category: AUTHENTICATION, status: APPROVED, body: "{{1}} is your verification code.", buttons: [{ type: otp, text: "Copy code" }] }
  - { name: pick, language: en_US, category: MARKETING, status: APPROVED, body: "Want it?", buttons: [{ type: quick_reply, text: "Yes" }] }
`, "flows/main.yaml": `
flow: main
start: multiline
triggers: [{ keyword: go }]
vars: { note: "line one\nline two\tand     more", none: "", code: "482913" }
steps:
  multiline:
    template: { name: note, params: ["{{ vars.note }}"] }
    goto: empty
  empty:
    template: { name: note, params: ["{{ vars.none }}"] }
    goto: code
  code:
    template: { name: login_code, params: ["{{ vars.code }}"], buttons: ["{{ vars.code }}"] }
    goto: button
  button:
    template: { name: pick, buttons: ["{{ vars.none }}"] }
    end: true
`})
	s := newSession(t, bot, engine.Options{}) // the contact is "c1": no phone number
	res := say(t, s, "go")
	if len(s.Sent) != 4 {
		t.Fatalf("committed %d messages, want 4", len(s.Sent))
	}
	if got := s.Sent[0].Message.Template.Params[0]; got != "line one line two and more" {
		t.Errorf("the cleaned parameter is %q", got)
	}
	if w := records(res, engine.RecWarning); len(w) != 1 || !strings.Contains(w[0].Detail, "newline, a tab or more than four spaces") {
		t.Errorf("warnings: %+v", w)
	}
	st, err := s.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Outbox) != 0 {
		t.Fatalf("outbox %+v", st.Outbox)
	}
	want := []struct {
		status string
		code   int
		why    string
	}{
		{"sent", 0, ""},
		{"failed", 100, "body parameter 1 is empty"},
		{"failed", 131062, "business-scoped user id"},
		{"failed", 100, "button 0 (quick_reply) was given an empty value"},
	}
	if len(st.Recent) != len(want) {
		t.Fatalf("deliveries %+v", st.Recent)
	}
	for i, w := range want {
		d := st.Recent[i]
		if d.Status != w.status || d.ErrorCode != w.code || !strings.Contains(d.Error, w.why) {
			t.Errorf("delivery %d: %s %d %q; want %s %d %q", i, d.Status, d.ErrorCode, d.Error, w.status, w.code, w.why)
		}
	}
	if st.Cost.Of("authentication").Amount != 0 || st.Cost.Of("marketing").Messages != 0 {
		t.Errorf("a message never sent was charged: %+v", st.Cost)
	}
}
