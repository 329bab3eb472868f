package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/analytics"
	"github.com/flowbot/flowbot/dryrun"
	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
)

// analyticsOf reads GET /api/analytics.
func (r *rig) analyticsOf(query string) (int, *analytics.Report, string) {
	r.T.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/api/analytics?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep analytics.Report
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &rep); err != nil {
			r.T.Fatalf("%v: %s", err, body)
		}
	}
	return resp.StatusCode, &rep, string(body)
}

// The funnel `serve` counts from its commits is the one the dry run walks
// for the same script: two contacts, one who retries and goes back, one
// who never answers and drops at the timeout.
func TestAnalyticsFunnelEqualsTheDryRun(t *testing.T) {
	r := newRig(t, "../examples/clinic")
	start := r.clock.Now()
	// Serve.
	r.Post(textWebhook("15550001111", "Ana", "wamid.a1", "hi", start))
	r.Post(textWebhook("15550002222", "Bo", "wamid.b1", "hi", start))
	r.Settled(4)
	r.clock.Advance(time.Minute)
	r.Post(textWebhook("15550001111", "Ana", "wamid.a2", "tomorrow", start.Add(time.Minute)))
	r.Settled(5)
	r.clock.Advance(time.Minute)
	r.Post(textWebhook("15550001111", "Ana", "wamid.a3", "2026-12-01", start.Add(2*time.Minute)))
	r.Settled(6)
	r.clock.Advance(time.Minute)
	r.Post(buttonWebhook("15550001111", "wamid.a4", "no", "Pick another day", start.Add(3*time.Minute)))
	r.Settled(7)
	r.clock.Advance(47*time.Hour - 2*time.Minute) // Bo's timeout, not yet Ana's
	var got *analytics.Report
	var body string
	defer func() {
		if t.Failed() {
			_, v := r.API("GET", "/api/contacts/15550002222", apiToken, nil)
			t.Log(body, v)
		}
	}()
	r.WaitFor("Bo to drop at ask_date", func() bool {
		_, got, body = r.analyticsOf("flow=appointments")
		return got.Ended == 1
	})

	// The dry run.
	bot, diags := flows.Load("../examples/clinic")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	ctx := context.Background()
	var dry []*dryrun.Session
	for _, c := range []engine.Contact{{ID: "15550001111", Name: "Ana"}, {ID: "15550002222", Name: "Bo"}} {
		s, err := dryrun.NewSession(ctx, engine.New(bot, engine.Options{}), c, start)
		if err != nil {
			t.Fatal(err)
		}
		dry = append(dry, s)
	}
	ana, bo := dry[0], dry[1]
	say := func(s *dryrun.Session, in engine.Inbound) {
		if _, err := s.Say(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	say(ana, engine.Inbound{Text: "hi"})
	say(bo, engine.Inbound{Text: "hi"})
	ana.Now = start.Add(time.Minute)
	say(ana, engine.Inbound{Text: "tomorrow"})
	ana.Now = start.Add(2 * time.Minute)
	say(ana, engine.Inbound{Text: "2026-12-01"})
	ana.Now = start.Add(3 * time.Minute)
	say(ana, ana.Tap("no"))
	if err := bo.Advance(ctx, 47*time.Hour+time.Minute); err != nil { // as the clock stands at serve's end
		t.Fatal(err)
	}
	want := analytics.FromCounts(sum(t, dry, "appointments"), bot.Flow("appointments"), "USD", analytics.Query{Flow: "appointments"})

	if got.Started != 2 || got.Started != want.Started || got.Ended != want.Ended || got.Converted != want.Converted || got.HandedOff != want.HandedOff {
		t.Fatalf("serve counted started %d ended %d converted %d handed off %d; the dry run %+v", got.Started, got.Ended, got.Converted, got.HandedOff, want)
	}
	for _, name := range want.StepOrder {
		g, w := got.Steps[name], want.Steps[name]
		if g.Entered != w.Entered || g.Retries != w.Retries || !sameExits(g.Exits, w.Exits) {
			t.Errorf("step %s: serve %+v, dry run %+v", name, g, w)
		}
	}
	ask := got.Steps["ask_date"]
	// Entered three times (Ana twice, Bo once), asked again once, left for
	// confirm once and for give_up by Bo's timeout; Bo dropped there, and
	// Ana waits there now, having never answered its second ask.
	if ask.Entered != 3 || ask.Retries != 1 || ask.Exits["confirm"] != 1 || ask.Exits["give_up"] != 1 || ask.Waiting != 1 || ask.Dropped != 2 {
		t.Fatalf("ask_date: %+v", ask)
	}
	if ask.AnswerP50 <= 0 || got.Steps["give_up"].Exits["end"] != 1 || got.Steps["confirm"].Exits["ask_date"] != 1 {
		t.Fatalf("answer time %v, give_up %+v, confirm %+v", ask.AnswerP50, got.Steps["give_up"], got.Steps["confirm"])
	}

	// A range before the contacts came counts nothing; bad parameters are
	// refused in the user's terms.
	before := start.Add(-24 * time.Hour).Format(time.RFC3339)
	if _, empty, _ := r.analyticsOf("flow=appointments&from=" + before + "&to=" + start.Add(-time.Hour).Format(time.RFC3339)); empty.Started != 0 || empty.Steps["ask_date"].Entered != 0 {
		t.Fatalf("a range before anything: %+v", empty)
	}
	for q, want := range map[string]string{"": "flow is required", "flow=appointments&from=yesterday": "RFC 3339", "flow=nope": `no flow \"nope\"`,
		"flow=appointments&from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z": "before"} {
		code, _, body := r.analyticsOf(q)
		if code/100 != 4 || !strings.Contains(body, want) {
			t.Errorf("?%s: %d %s, want %q", q, code, body, want)
		}
	}
	// The diagram carries the counts.
	req, _ := http.NewRequest("GET", r.URL+"/api/analytics/graph?flow=appointments", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	graph, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"3 entered · 1 waiting · 2 dropped (67%)", `|"timeout 47h · 1"|`, "class f0_s1 drop3"} {
		if resp.StatusCode != 200 || !strings.Contains(string(graph), want) {
			t.Fatalf("the annotated diagram (%d) lacks %q:\n%s", resp.StatusCode, want, graph)
		}
	}
}

func sum(t *testing.T, sessions []*dryrun.Session, flow string) (total conversation.FlowCounts) {
	for _, s := range sessions {
		c, err := s.Facts(context.Background(), flow)
		if err != nil {
			t.Fatal(err)
		}
		total.Add(c)
	}
	return total
}

func sameExits(a, b map[string]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
