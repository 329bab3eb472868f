package engine_test

import (
	"context"
	"testing"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
)

// A template goes out in the contact's language as a text is picked:
// exact, then the base (es_MX reads es), then the base's one variant (en
// reads en_US when it is the only en_*), then the bot's default.
func TestTemplateLanguageFallsBackLikeTexts(t *testing.T) {
	bot := loadBot(t, map[string]string{"flowbot.yaml": "language: pt_BR\nlanguages: [pt_BR, en, es]\n", "templates.yaml": `
templates:
  - { name: reminder, language: pt_BR, category: UTILITY, status: APPROVED, body: "Olá {{1}}" }
  - { name: reminder, language: en_US, category: UTILITY, status: APPROVED, body: "Hi {{1}}" }
  - { name: reminder, language: es, category: UTILITY, status: APPROVED, body: "Hola {{1}}" }
`, "flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a:
    say: { pt_BR: "oi", en: "hi", es: "hola" }
    template: { name: reminder, params: ["Ana"] }
    end: true
`})
	for lang, want := range map[string]string{"en_US": "en_US", "en": "en_US", "en_GB": "en_US", "es_MX": "es", "es": "es", "pt_BR": "pt_BR", "fr": "pt_BR", "": "pt_BR"} {
		s := newSession(t, bot, engine.Options{})
		if err := s.Update(context.Background(), func(st *conversation.Record) { st.Contact.Language = lang }); err != nil {
			t.Fatal(err)
		}
		res := say(t, s, "go")
		var got string
		for _, o := range res.Outbound {
			if o.Message.Template != nil {
				got = o.Message.Template.Language
			}
		}
		if got != want {
			t.Errorf("a contact reading %q got the template in %q, want %q", lang, got, want)
		}
	}
}
