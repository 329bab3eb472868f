package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

func botVersion(t *testing.T, edit func(string) string) (*engine.Engine, string, map[string][]byte) {
	t.Helper()
	files, err := flows.ReadFiles("../examples/clinic")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		files["flows/appointments.yaml"] = []byte(edit(string(files["flows/appointments.yaml"])))
	}
	bot, diags := flows.LoadFiles("clinic", files)
	if bot == nil {
		t.Fatal(diags.Error())
	}
	return engine.New(bot, engine.Options{}), flows.Version(files), files
}

// TestReloadPinsRunningFlows: after a reload, a contact in the middle of a
// flow finishes it on the version it started with, also on a server that
// never loaded that version (a restart, another instance); a new
// conversation gets the new version.
func TestReloadPinsRunningFlows(t *testing.T) {
	st := memory.New()
	fake := fakegraph.New("tok")
	defer fake.Close()
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	r := newRigOn(t, "../examples/clinic", st, fake, clk)
	ctx := context.Background()
	e1, v1, f1 := botVersion(t, nil)
	if err := r.Srv.SetBot(ctx, e1, v1, f1); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	r.Post(textWebhook("15550000001", "Ana", "wamid.a1", "hi", now))
	r.Settled(2)

	e2, v2, f2 := botVersion(t, func(s string) string {
		s = strings.Replace(s, "Which day suits you? (YYYY-MM-DD)", "Pick a day (YYYY-MM-DD)", 1)
		return strings.Replace(s, `ask: "Book {{ vars.date }}?"`, `ask: "Shall I book {{ vars.date }}?"`, 1)
	})
	if v1 == v2 {
		t.Fatal("an edit did not change the version")
	}
	if err := r.Srv.SetBot(ctx, e2, v2, f2); err != nil {
		t.Fatal(err)
	}
	r.Post(textWebhook("15550000001", "Ana", "wamid.a2", "2026-12-01", now.Add(time.Minute)))
	r.Post(textWebhook("15550000002", "Bo", "wamid.b1", "hi", now.Add(time.Minute)))
	got := texts(r.Settled(5))
	joined := strings.Join(got, "|")
	if !strings.Contains(joined, "Book 2026-12-01?") || strings.Contains(joined, "Shall I book") {
		t.Errorf("the running flow did not stay on its version: %v", got)
	}
	if !strings.Contains(joined, "Pick a day") {
		t.Errorf("a new conversation did not get the new version: %v", got)
	}

	// A second server that only knows the new version (a restart, or
	// another instance) finishes the pinned flow on the old one, from
	// the store.
	r2 := newRigOn(t, "../examples/clinic", st, fake, clk)
	if err := r2.Srv.SetBot(ctx, e2, v2, f2); err != nil {
		t.Fatal(err)
	}
	r.Srv.Shutdown(ctx)
	r2.Post(buttonWebhook("15550000001", "wamid.a3", "no", "Pick another day", now.Add(2*time.Minute)))
	got = texts(r2.Settled(6))
	if got[5] != "Which day suits you? (YYYY-MM-DD)" {
		t.Errorf("after the restart the pinned flow asked %q", got[5])
	}
	state, _ := st.Load(ctx, "15550000001")
	if state.FlowVersion != v1 {
		t.Errorf("flow version %q, want %q", state.FlowVersion, v1)
	}
}
