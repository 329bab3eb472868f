package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
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

// A contact's language when WhatsApp sends none (FLOW_SPEC 9.4): the
// one a flow set, else the one a start gave, else the one of their
// number's country code (the longest that matches), else the first of
// languages:.
func TestContactLanguageByCountry(t *testing.T) {
	bot := loadBot(t, map[string]string{"flowbot.yaml": `
languages: [en, pt_BR, pt_PT]
language_by_country: { "55": pt_BR, "351": pt_PT, "1": en }
`, "flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }, { keyword: vai }]
steps:
  a:
    say: { en: "hello", pt_BR: "oi", pt_PT: "olá" }
    on:
      - if: message.text == "vai"
        goto: choose
    else: done
  choose:
    set: { contact.language: '"pt_PT"' }
    goto: done
  done:
    end: true
`})
	ctx := context.Background()
	for _, tc := range []struct{ id, text, want, from string }{
		{"5511999990000", "go", "oi", "country"},
		{"351912345678", "go", "olá", "country"},
		{"15550001111", "go", "hello", "country"},
		{"4915112345678", "go", "hello", "default"},
		{"US.13491208655302741918", "go", "hello", "default"},
	} {
		s, err := dryrun.NewSession(ctx, engine.New(bot, engine.Options{}), engine.Contact{ID: tc.id}, t0)
		if err != nil {
			t.Fatal(err)
		}
		res := say(t, s, tc.text)
		if got := texts(res); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: %q, want %q", tc.id, got, tc.want)
		}
		st, _ := s.State(ctx)
		if _, from := st.Contact.LanguageIn(&bot.Settings); from != tc.from {
			t.Errorf("%s: the language came from %q, want %q", tc.id, from, tc.from)
		}
	}
	// A flow's choice beats the country, and a later start's language.
	s, _ := dryrun.NewSession(ctx, engine.New(bot, engine.Options{}), engine.Contact{ID: "5511999990000"}, t0)
	say(t, s, "vai")
	if _, err := s.Command(ctx, conversation.Command{Kind: conversation.CommandStart, Flow: "main", Language: "en"}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.State(ctx)
	if lang, from := st.Contact.LanguageIn(&bot.Settings); lang != "pt_PT" || from != "flow" {
		t.Errorf("after the flow chose pt_PT and a start said en: %s from %s", lang, from)
	}
	// A start's language beats the country.
	s, _ = dryrun.NewSession(ctx, engine.New(bot, engine.Options{}), engine.Contact{ID: "5511999990001"}, t0)
	if _, err := s.Command(ctx, conversation.Command{Kind: conversation.CommandStart, Flow: "main", Language: "pt_PT"}); err != nil {
		t.Fatal(err)
	}
	st, _ = s.State(ctx)
	if lang, from := st.Contact.LanguageIn(&bot.Settings); lang != "pt_PT" || from != "start" {
		t.Errorf("a start in pt_PT to a Brazilian number: %s from %s", lang, from)
	}
}

// message.title is the tapped title, in the contact's language; save
// keeps the id.
func TestTappedTitle(t *testing.T) {
	bot := loadBot(t, map[string]string{"flowbot.yaml": "languages: [en, es]\n", "flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
vars: { picked: "" }
steps:
  a:
    ask: { en: "Coffee or tea?", es: "¿Café o té?" }
    buttons: [{ id: coffee, title: { en: "Coffee", es: "Café" } }, { id: tea, title: { en: "Tea", es: "Té" } }]
    save: picked
    goto: b
  b:
    say: "{{ vars.picked }} / {{ message.title }}"
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	if err := s.Update(context.Background(), func(st *conversation.Record) { st.Contact.Language = "es" }); err != nil {
		t.Fatal(err)
	}
	say(t, s, "go")
	res, err := s.Say(context.Background(), s.Tap("coffee"))
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(res); len(got) != 1 || got[0] != "coffee / Café" {
		t.Fatalf("got %q, want the id saved and the Spanish title", got)
	}
}

// A list's section titles are texts like any other: in the contact's
// language.
func TestListSectionTitlesTranslate(t *testing.T) {
	bot := loadBot(t, map[string]string{"flowbot.yaml": "languages: [en, es]\n", "flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a:
    ask: { en: "Pick", es: "Elige" }
    list:
      button: { en: "Options", es: "Opciones" }
      sections:
        - { title: { en: "Some", es: "Algunos" }, rows: [{ id: r1, title: "One" }] }
        - { title: { en: "More", es: "Más" }, rows: [{ id: r2, title: "Two" }] }
    goto: b
  b:
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	if err := s.Update(context.Background(), func(st *conversation.Record) { st.Contact.Language = "es" }); err != nil {
		t.Fatal(err)
	}
	res := say(t, s, "go")
	l := res.Outbound[0].Message.List
	if l == nil || l.Button != "Opciones" || l.Sections[0].Title != "Algunos" || l.Sections[1].Title != "Más" {
		t.Fatalf("the list in es: %+v", l)
	}
}

// A step marked goal: true records a goal event when the flow reaches it
// (FLOW_SPEC 9.1), and the diagram says so.
func TestGoalReached(t *testing.T) {
	bot := loadBot(t, map[string]string{"flows/main.yaml": `
flow: main
start: a
triggers: [{ keyword: go }]
steps:
  a:
    say: "hi"
    goto: booked
  booked:
    goal: true
    say: "Booked!"
    end: true
`})
	s := newSession(t, bot, engine.Options{})
	res := say(t, s, "go")
	if g := records(res, engine.RecGoal); len(g) != 1 || g[0].Step != "booked" {
		t.Fatalf("goal records %+v", g)
	}
	if !strings.Contains(flows.Mermaid([]*flows.FlowGraph{flows.Graph(bot.Flows[0])}), "goal") {
		t.Fatal("the diagram does not mark the goal")
	}
}
