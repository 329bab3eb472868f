package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/server"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// An API start is a command in the contact's queue: when no worker can
// apply it within the wait, the answer says it is queued, and it is
// applied later, once.
func TestAPIStartIsQueued(t *testing.T) {
	r := newRig(t, "../examples/shop", func(c *server.Config) { c.Workers = 1; c.CommandWait = 100 * time.Millisecond })
	resume := r.Fake.Hang()
	// The only worker is kept busy sending another contact's reply.
	r.Post(textWebhook("15550007777", "Ana", "wamid.busy", "hi", r.clock.Now()))
	r.WaitFor("the worker to hang on WhatsApp", func() bool { return r.Fake.Waiting() == 1 })
	code, view := r.API("POST", "/api/contacts/447700900123/flows/shipping_update", apiToken,
		map[string]any{"vars": map[string]any{"order_id": "123456", "eta": "on Friday"}})
	if code != 202 || view["status"] != "queued" {
		t.Fatalf("start while no worker is free: %d %v", code, view)
	}
	if _, err := r.store.Load(context.Background(), "447700900123"); err == nil {
		t.Fatal("the start ran inside the request")
	}
	resume()
	sent := r.WaitSent(2)
	var started int
	for _, s := range sent {
		if s.To == "447700900123" {
			started++
		}
	}
	r.Stop()
	if started != 1 || len(r.Fake.Sent()) != 2 {
		t.Fatalf("the queued start sent %d messages (all: %v)", started, bodies(r.Fake.Sent()))
	}
}

// A command answered by another instance's worker: the instance that
// queued it sees the outcome in the stored state and answers with it.
func TestAPIStartAppliedByAnotherInstance(t *testing.T) {
	st := memory.New()
	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	busy := newRigOn(t, "../examples/shop", st, fake, clk, func(c *server.Config) { c.Workers = 1; c.SweepInterval = time.Hour })
	free := newRigOn(t, "../examples/shop", st, fake, clk)
	resume := fake.Hang()
	defer resume()
	busy.Post(textWebhook("15550008888", "Ana", "wamid.busy2", "hi", clk.Now()))
	busy.WaitFor("the worker to hang on WhatsApp", func() bool { return fake.Waiting() == 1 })
	code, view := busy.API("POST", "/api/contacts/447700900124/flows/back_in_stock", apiToken,
		map[string]any{"vars": map[string]any{"product": "Apron", "slug": "apron"}})
	if c, _ := view["contact"].(map[string]any); code != 202 || c == nil || c["id"] != "447700900124" {
		t.Fatalf("start applied by the other instance: %d %v", code, view)
	}
	if view["status"] == "queued" {
		t.Fatalf("the other instance's worker did not apply it in time: %v", view)
	}
	_ = free
}

// A release is refused (409) and changes nothing for a contact not in a
// handoff, and a start for a contact in one is refused when applied.
func TestCommandRefusals(t *testing.T) {
	r := newRig(t, "../examples/support")
	now := r.clock.Now()
	r.Post(textWebhook("15550001111", "Ana", "wamid.1", "hi", now))
	r.WaitSent(1)
	if code, _ := r.API("POST", "/api/contacts/15550001111/release", apiToken, nil); code != 409 {
		t.Errorf("release without a handoff: %d", code)
	}
	r.Post(buttonWebhook("15550001111", "wamid.2", "technical", "Technical problem", now))
	r.WaitSent(3)
	r.Post(buttonWebhook("15550001111", "wamid.3", "not_fixed", "No", now))
	r.waitState("15550001111", func(st *conversation.Record) bool { return st.Handoff != nil })
	code, out := r.API("POST", "/api/contacts/15550001111/flows/triage", apiToken, nil)
	if code != 409 {
		t.Errorf("a start during a handoff: %d %v", code, out)
	}
}

// The API start's language reaches the flow's texts, not only its
// templates.
func TestAPIStartLanguageReachesTexts(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "flows"), 0o755)
	os.WriteFile(filepath.Join(dir, "flowbot.yaml"), []byte("languages: [en, es]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "flows", "n.yaml"), []byte("flow: notice\nstart: s\nsteps:\n  s:\n    say: { en: \"Your order shipped\", es: \"Tu pedido salió\" }\n    end: true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "flows", "h.yaml"), []byte("flow: hello\nstart: s\ntriggers: [{ keyword: hi }]\nsteps:\n  s: { say: hi, end: true }\n"), 0o644)
	r := newRig(t, dir)
	r.Post(textWebhook("15550001212", "Eva", "wamid.l1", "hi", r.clock.Now())) // opens the window
	r.WaitSent(1)
	if code, view := r.API("POST", "/api/contacts/15550001212/flows/notice", apiToken, map[string]any{"language": "es"}); code != 202 {
		t.Fatalf("start: %d %v", code, view)
	}
	if got := text(r.WaitSent(2)[1]); got != "Tu pedido salió" {
		t.Fatalf("sent %q, want the Spanish text", got)
	}
}
