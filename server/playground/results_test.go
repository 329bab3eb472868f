package playground_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flowbot/flowbot/engine/conversation"
	"github.com/flowbot/flowbot/flows"
	"github.com/flowbot/flowbot/server/playground"
	"github.com/flowbot/flowbot/server/servertest"
	"github.com/flowbot/flowbot/store/memory"
)

// TestResultsInBrowser: the results page of a serving bot draws the flow
// with each edge's count and the steps where many dropped shaded, from the
// facts its store holds, behind the playground's sign-in.
func TestResultsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	exe := chromium(t)
	bot, diags := flows.Load("../../examples/clinic")
	if bot == nil {
		t.Fatal(diags.Error())
	}
	now := time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	st := memory.New()
	// Ten contacts started; four went on to confirm, six dropped at the
	// date's timeout; two booked.
	steps := map[string]*conversation.StepCounts{
		"welcome":  {Entered: 10, Exits: map[string]int64{"ask_date": 10}},
		"ask_date": {Entered: 10, Dropped: 6, Retries: 3, Exits: map[string]int64{"confirm": 4, "give_up": 6}},
		"confirm":  {Entered: 4, Exits: map[string]int64{"booked": 2, "ask_date": 2}},
		"give_up":  {Entered: 6, Exits: map[string]int64{"end": 6}},
	}
	tally := []conversation.TallyOut{{Version: 1, At: now.Add(-time.Hour), Flows: []conversation.FlowFacts{{Flow: "appointments",
		FlowCounts: conversation.FlowCounts{Started: 10, Ended: 6, Converted: 2, Steps: steps}}}}}
	if err := st.DrainTallies(context.Background(), "15550001111", tally); err != nil {
		t.Fatal(err)
	}
	srv := servertest.New(t, "../../examples/clinic", servertest.Options{Store: st, Now: func() time.Time { return now }}).Srv
	pg, err := playground.New(playground.Config{Dir: "../../examples/clinic", Token: servertest.APIToken, Results: srv.AnalyticsHandler})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, pg)

	ctx := browser(t, exe)
	shot := func(string) chromedp.Action { return chromedp.ActionFunc(func(context.Context) error { return nil }) }
	var svg, summary, askRow, classes string
	run(t, ctx, shot,
		step{"sign in", chromedp.Tasks{chromedp.Navigate(base + "/results.html?flow=appointments"), chromedp.WaitVisible(`input[name="token"]`, chromedp.ByQuery),
			chromedp.SetValue(`input[name="token"]`, servertest.APIToken, chromedp.ByQuery), chromedp.Submit(`input[name="token"]`, chromedp.ByQuery),
			chromedp.WaitVisible("#messages", chromedp.ByID)}}, // the sign-in leads to the playground
		step{"open the results", chromedp.Tasks{chromedp.Navigate(base + "/results.html?flow=appointments"),
			chromedp.WaitVisible("#rdiagram svg", chromedp.ByQuery), chromedp.OuterHTML("#rdiagram svg", &svg, chromedp.ByQuery),
			chromedp.Text("#rsummary", &summary, chromedp.ByID), chromedp.Text(`tr[data-step="ask_date"]`, &askRow, chromedp.ByQuery),
			chromedp.Evaluate(`Array.from(document.querySelectorAll("#rdiagram svg g.node")).filter(n => n.classList.contains("drop3")).map(n => n.textContent).join("|")`, &classes)}},
	)
	if !strings.Contains(summary, "started 10") || !strings.Contains(summary, "converted 2 (20.0%)") {
		t.Errorf("summary %q", summary)
	}
	for _, want := range []string{"10 entered", "6 dropped (60%)", "6 ended"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the diagram lacks %q", want)
		}
	}
	if !strings.Contains(classes, "ask_date") {
		t.Errorf("ask_date, where 60%% dropped, is not shaded; shaded: %q", classes)
	}
	if !strings.Contains(askRow, "confirm 4") || !strings.Contains(askRow, "give_up 6") {
		t.Errorf("the ask_date row: %q", askRow)
	}
}
