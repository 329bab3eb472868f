package engine_test

import (
	"context"
	"github.com/flowbot/flowbot/engine/conversation"
	"strconv"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
)

const benchFlow = `
flow: counter
start: menu
triggers: [{ keyword: hi }]
vars:
  count: 0
  last: ""
fallback:
  template: nudge
  params: ["{{ contact.name }}"]
steps:
  menu:
    ask: "Hi {{ contact.name }}, send a number"
    on:
      - if: message.text == "1"
        goto: one
      - if: message.text == "2"
        goto: one
    else: counted
  counted:
    set:
      count: vars.count + 1
      last: message.text
    say: "You said {{ vars.last }} ({{ vars.count }} times)."
    goto: menu
  one:
    say: "One or two."
    end: true
`

// benchInbound measures one inbound message through load, Handle and
// save on the memory store: two conditions, two `set`s, interpolated
// texts, and two sends (the say and the re-asked question). With age over
// 24h the message arrives late, the window is closed when it is handled:
// the say becomes the flow's fallback template and the question, in the
// same run, is skipped after it (one fallback per run).
func benchInbound(b *testing.B, age time.Duration) {
	bot := loadBot(b, map[string]string{"flows/main.yaml": benchFlow, "templates.yaml": windowTemplates})
	e := engine.New(bot, engine.Options{})
	var st store.Contacts = memory.New()
	ctx := context.Background()
	now := t0
	first := conversation.NewRecord("15550001111")
	first.Contact.Name = "Ana"
	if _, err := e.Handle(ctx, &first.Session, engine.MessageIn{Message: &engine.Inbound{Type: "text", Text: "hi", Timestamp: now.Add(-age)}}, now); err != nil {
		b.Fatal(err)
	}
	if err := st.Save(ctx, first); err != nil {
		b.Fatal(err)
	}
	texts := []string{"7", "8", "9"}
	msgs := make([]engine.Inbound, len(texts))
	for i, t := range texts {
		msgs[i] = engine.Inbound{ID: "wamid." + strconv.Itoa(i), Type: "text", Text: t}
	}
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Second)
		m := &msgs[i%len(msgs)]
		m.Timestamp = now.Add(-age)
		s, err := st.Load(ctx, "15550001111")
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.Handle(ctx, &s.Session, engine.MessageIn{Message: m}, now)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Save(ctx, s); err != nil {
			b.Fatal(err)
		}
		sent += len(res.Outbound)
		if want := age >= engine.WindowLength; (res.Outbound[0].Via == engine.ViaTemplate) != want {
			b.Fatalf("sent %s, want template: %t", res.Outbound[0].Via, want)
		}
	}
	b.StopTimer()
	want := 2
	if age >= engine.WindowLength {
		want = 1
	}
	if sent != want*b.N {
		b.Fatalf("sent %d messages for %d inbound, want %d each", sent, b.N, want)
	}
}

func BenchmarkInbound(b *testing.B)         { benchInbound(b, 0) }
func BenchmarkInboundFallback(b *testing.B) { benchInbound(b, 25*time.Hour) }

const benchSubflow = `
flow: main
start: ask
triggers: [{ keyword: hi }]
vars: { n: 0 }
steps:
  ask:
    ask: { en: "Say something, {{ contact.name }}", es: "Di algo, {{ contact.name }}" }
    goto: call
  call:
    subflow: echo
    with: { said: message.text }
    on:
      - if: result.count > 0
        goto: ask
    else: ask
`

// BenchmarkInboundSubflow measures one inbound message whose handling
// calls a subflow (with a localized text in it) and comes back: the
// reply, the subflow's say, the question again, in Spanish.
func BenchmarkInboundSubflow(b *testing.B) {
	bot := loadBot(b, map[string]string{
		"flowbot.yaml":    "languages: [en, es]\n",
		"flows/main.yaml": benchSubflow,
		"flows/echo.yaml": "flow: echo\nstart: say\nvars: { said: \"\", count: 0 }\nsteps:\n  say:\n    set: { count: vars.count + 1 }\n    say: { en: \"You said {{ vars.said }}\", es: \"Dijiste {{ vars.said }}\" }\n    end: true\n",
	})
	e := engine.New(bot, engine.Options{})
	var st store.Contacts = memory.New()
	ctx := context.Background()
	now := t0
	first := conversation.NewRecord("15550001111")
	first.Contact.Name, first.Contact.Language = "Ana", "es"
	if _, err := e.Handle(ctx, &first.Session, engine.MessageIn{Message: &engine.Inbound{Type: "text", Text: "hi", Timestamp: now}}, now); err != nil {
		b.Fatal(err)
	}
	if err := st.Save(ctx, first); err != nil {
		b.Fatal(err)
	}
	msg := engine.Inbound{ID: "wamid.x", Type: "text", Text: "hola"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Second)
		msg.Timestamp = now
		s, err := st.Load(ctx, "15550001111")
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.Handle(ctx, &s.Session, engine.MessageIn{Message: &msg}, now)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Save(ctx, s); err != nil {
			b.Fatal(err)
		}
		if len(res.Outbound) != 2 || res.Outbound[0].Message.Text != "Dijiste hola" {
			b.Fatalf("sent %+v", res.Outbound)
		}
	}
}
