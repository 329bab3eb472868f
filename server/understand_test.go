package server_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/llm"
	"github.com/flowbot/flowbot/llm/fakellm"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/whatsapp"
	"github.com/flowbot/flowbot/whatsapp/fakegraph"
)

// serve asks the configured model (here the fake OpenAI-compatible
// server): the concierge understands a request in free text, extracts
// the day, and counts the calls, tokens and cost in /metrics and the
// analytics; a model that stops answering sends the next contact to a
// person.
func TestServeUnderstandsFreeText(t *testing.T) {
	model := fakellm.New()
	defer model.Close()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../examples/concierge")); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "flowbot.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	cfg = []byte(strings.Replace(string(cfg), "http://localhost:11434/v1", model.URL, 1))
	cfg = []byte(strings.Replace(string(cfg), "timeout: 10s", "timeout: 2s", 1))
	os.WriteFile(cfgPath, cfg, 0o644)

	fake := fakegraph.New("tok")
	t.Cleanup(fake.Close)
	clk := &clock{now: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	r := newRigEngine(t, dir, memory.New(), fake, clk, whatsapp.RetryPolicy{Base: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 6}, engine.Options{Model: llm.New()})
	now := clk.Now()
	r.Post(textWebhook("15550001111", "Ana", "wamid.1", "hi", now))
	r.Settled(1)
	r.Post(textWebhook("15550001111", "Ana", "wamid.2", "I need to move my appointment, please", now))
	if got := texts(r.Settled(2)); got[1] != "Which day would suit you?" {
		t.Fatalf("after the request: %v", got)
	}
	r.Post(textWebhook("15550001111", "Ana", "wamid.3", "2026-12-08 would be great", now))
	if got := texts(r.Settled(3)); !strings.HasPrefix(got[2], "Done: your appointment is on 2026-12-08") {
		t.Fatalf("after the day: %v", got)
	}
	reqs := model.Requests()
	if len(reqs) != 2 || reqs[0].Schema["properties"] == nil || reqs[1].User != "2026-12-08 would be great" {
		t.Fatalf("the model was asked %+v", reqs)
	}

	// The model stops answering in time: the next contact goes to a person.
	model.Set(fakellm.Behaviour{Delay: 5 * time.Second})
	r.Post(textWebhook("15550002222", "Bo", "wamid.4", "hi", now))
	r.Settled(4)
	r.Post(textWebhook("15550002222", "Bo", "wamid.5", "my tooth hurts", now))
	if got := texts(r.Settled(5)); !strings.Contains(got[4], "I did not get that") {
		t.Fatalf("after a timeout: %v", got)
	}

	resp, err := http.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`flowbot_llm_calls_total{flow="desk",result="ok"} 2`, `flowbot_llm_calls_total{flow="desk",result="timeout"} 1`,
		`flowbot_llm_tokens_total{direction="output",flow="desk"} 24`, `flowbot_llm_cost_total{flow="desk"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_, rep, body := r.analyticsOf("flow=desk")
	if rep.Converted != 1 || rep.Cost.LLM <= 0 || rep.Steps["how_can_i_help"].Exits["pick_day"] != 1 || rep.Steps["how_can_i_help"].Exits["not_understood"] != 1 {
		t.Fatalf("analytics: %s", body)
	}
}
